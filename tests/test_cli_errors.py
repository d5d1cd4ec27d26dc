"""Every bad invocation of the `ignis` command: a one-line message on stderr, a non-zero
exit code, no traceback (issue 7). Each case runs `python -m ignis ...` in a subprocess;
the cases run two at a time in a module fixture to keep the suite quick."""
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ignis.testing import make_tiny_qwen2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO = "/nonexistent/dir"


def _files(tmp):
    """name -> path of the files the cases use."""
    tiny = make_tiny_qwen2(os.path.join(tmp, "tiny.gguf"), n_layers=1, width=64, n_heads=4, n_kv_heads=2,
                           ffn=64, vocab=300, n_ctx=64)
    files = {"tiny": tiny, "dir": os.path.join(tmp, "adir"), "text": os.path.join(tmp, "notes.txt"),
             "empty": os.path.join(tmp, "empty.gguf"), "truncated": os.path.join(tmp, "truncated.gguf"),
             "fifo": os.path.join(tmp, "pipe.gguf"), "noread": os.path.join(tmp, "noread.gguf"),
             "mamba": os.path.join(tmp, "mamba.gguf"), "nan": os.path.join(tmp, "nan.gguf")}
    os.mkdir(files["dir"])
    with open(files["text"], "w") as f:
        f.write("hello, I am not a model\n")
    open(files["empty"], "wb").close()
    with open(tiny, "rb") as f:
        blob = f.read()
    with open(files["truncated"], "wb") as f:
        f.write(blob[:len(blob) // 2])
    os.mkfifo(files["fifo"])
    shutil.copy(tiny, files["noread"])
    os.chmod(files["noread"], 0)
    with open(files["mamba"], "wb") as f:
        f.write(blob.replace(b"\x05\x00\x00\x00\x00\x00\x00\x00qwen2", b"\x05\x00\x00\x00\x00\x00\x00\x00mamba", 1))
    from ignis.gguf import GGUFFile
    with GGUFFile(tiny) as g:
        at = g.tensors["output_norm.weight"].offset
    poisoned = bytearray(blob)
    poisoned[at:at + 4] = np.float32(np.nan).tobytes()
    with open(files["nan"], "wb") as f:
        f.write(poisoned)
    return files


# (id, argv with {name} placeholders for _files, expected exit code, what stderr must say)
CASES = [
    ("unknown flag", ["--bogus"], 2, "unrecognized arguments: --bogus"),
    ("unknown command", ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ("unknown subcommand flag", ["run", "-m", "{tiny}", "-p", "hi", "--bogus"], 2, "unrecognized arguments"),
    ("missing required prompt", ["run", "-m", "{tiny}"], 2, "-p/--prompt"),
    ("extra argument", ["inspect", "{tiny}", "{tiny}"], 2, "unrecognized arguments"),
    ("inspect missing file", ["inspect", f"{NO}/m.gguf"], 1, "m.gguf: cannot open: No such file or directory"),
    ("run missing file", ["run", "-m", f"{NO}/m.gguf", "-p", "hi"], 1, "cannot open: No such file"),
    ("tokenize missing file", ["tokenize", "-m", f"{NO}/m.gguf", "hi"], 1, "cannot open"),
    ("graph missing file", ["graph", "-m", f"{NO}/m.gguf"], 1, "cannot open"),
    ("plan missing file", ["plan", "-m", f"{NO}/m.gguf"], 1, "cannot open"),
    ("bench missing file", ["bench", "-m", f"{NO}/m.gguf", "-p", "4", "-n", "2"], 1, "cannot open"),
    ("chat missing file", ["chat", "-m", f"{NO}/m.gguf"], 1, "cannot open"),
    ("quantize missing file", ["quantize", f"{NO}/m.gguf", "{dir}/out.gguf"], 1, "cannot open"),
    ("inspect directory", ["inspect", "{dir}"], 1, "is a directory, expected a GGUF file"),
    ("run directory", ["run", "-m", "{dir}", "-p", "hi"], 1, "is a directory"),
    ("inspect fifo", ["inspect", "{fifo}"], 1, "is not a regular file"),
    ("inspect text file", ["inspect", "{text}"], 1, "not a GGUF file (magic b'hell'"),
    ("run text file", ["run", "-m", "{text}", "-p", "hi"], 1, "not a GGUF file"),
    ("inspect empty file", ["inspect", "{empty}"], 1, "file is empty"),
    ("inspect truncated file", ["inspect", "{truncated}"], 1, "truncated"),
    ("run unknown architecture", ["run", "-m", "{mamba}", "-p", "hi"], 1, "general.architecture is 'mamba'"),
    ("run NaN weights", ["run", "-m", "{nan}", "-p", "hi"], 1, "tensor output_norm.weight holds NaN/Inf"),
    ("-n -2", ["run", "-m", "{tiny}", "-p", "hi", "-n", "-2"], 2, "expected a non-negative integer, got '-2'"),
    ("-n abc", ["run", "-m", "{tiny}", "-p", "hi", "-n", "abc"], 2, "got 'abc'"),
    ("--temp abc", ["run", "-m", "{tiny}", "-p", "hi", "--temp", "abc"], 2, "invalid float value: 'abc'"),
    ("--temp -1", ["run", "-m", "{tiny}", "-p", "hi", "--temp", "-1"], 1, "temperature must be >= 0"),
    ("--temp nan", ["run", "-m", "{tiny}", "-p", "hi", "--temp", "nan"], 1, "temperature"),
    ("-t 0", ["run", "-m", "{tiny}", "-p", "hi", "-t", "0"], 2, "threads must be a positive integer, got '0'"),
    ("-t abc", ["run", "-m", "{tiny}", "-p", "hi", "-t", "abc"], 2, "threads must be a positive integer"),
    ("-t 100000", ["run", "-m", "{tiny}", "-p", "hi", "-t", "100000"], 1, "threads = 100000 is more than"),
    ("-c 0", ["run", "-m", "{tiny}", "-p", "hi", "-c", "0"], 2, "context size must be a positive integer"),
    ("-c huge", ["run", "-m", "{tiny}", "-p", "hi", "-c", "999999999"], 1, "n_ctx must be an integer in"),
    ("--top-k -3", ["run", "-m", "{tiny}", "-p", "hi", "--top-k", "-3"], 2, "got '-3'"),
    ("--top-p 2", ["run", "-m", "{tiny}", "-p", "hi", "--top-p", "2"], 1, "top_p must be in (0, 1]"),
    ("--min-p 5", ["run", "-m", "{tiny}", "-p", "hi", "--min-p", "5"], 1, "min_p must be in [0, 1]"),
    ("--seed abc", ["run", "-m", "{tiny}", "-p", "hi", "--seed", "abc"], 2, "invalid int value: 'abc'"),
    ("empty prompt", ["run", "-m", "{tiny}", "-p", ""], 1, "empty prompt"),
    ("prompt longer than --ctx", ["run", "-m", "{tiny}", "-p", "abcdefghijklmnop qrstuvwxyz", "-c", "4"], 1,
     "does not fit in the context of 4 tokens"),
    ("chat -n -5", ["chat", "-m", "{tiny}", "-n", "-5"], 2, "got '-5'"),
    ("bench -p 0", ["bench", "-m", "{tiny}", "-p", "0"], 2, "-p must be a positive integer"),
    ("bench -r 0", ["bench", "-m", "{tiny}", "-r", "0"], 2, "-r must be a positive integer"),
    ("graph --tokens 0", ["graph", "-m", "{tiny}", "--tokens", "0"], 2, "--tokens must be a positive integer"),
    ("graph unknown pass", ["graph", "-m", "{tiny}", "--passes", "nope"], 1, "unknown pass 'nope'"),
    # these three printed a FileNotFoundError traceback before issue 7
    ("graph --dot into a missing directory", ["graph", "-m", "{tiny}", "--dot", f"{NO}/g.dot"], 1,
     f"{NO}/g.dot: No such file or directory"),
    ("plan --svg into a missing directory", ["plan", "-m", "{tiny}", "--svg", f"{NO}/p.svg"], 1,
     f"{NO}/p.svg: No such file or directory"),
    ("quantize into a missing directory", ["quantize", "{tiny}", f"{NO}/q.gguf"], 1, "No such file or directory"),
    ("quantize unknown type", ["quantize", "{tiny}", "{dir}/q.gguf", "--type", "q4_k"], 1,
     "unsupported quantization type 'q4_k'"),
    ("tokenize text file", ["tokenize", "-m", "{text}", "hi"], 1, "not a GGUF file"),
]
UNREADABLE = ("inspect unreadable file", ["inspect", "{noread}"], 1, "noread.gguf: cannot open: Permission denied")


def _as_unprivileged_root():
    """We run as root, for whom chmod 000 does not stop reading: drop the two capabilities
    that bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) for the child."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def _run(argv, files, prefix=()):
    argv = [a.format(**files) for a in argv]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), IGNIS_HOME=files["home"])
    return subprocess.run([*prefix, sys.executable, "-m", "ignis", *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("cli"))
    files = _files(tmp)
    files["home"] = os.path.join(tmp, "home")
    jobs = {case[0]: (case[1], ()) for case in CASES}
    if os.geteuid() != 0:
        jobs[UNREADABLE[0]] = (UNREADABLE[1], ())
    elif _as_unprivileged_root() is not None:
        jobs[UNREADABLE[0]] = (UNREADABLE[1], _as_unprivileged_root())
    jobs["--debug shows the traceback"] = (["--debug", "inspect", "{text}"], ())
    jobs["no command"] = ([], ())
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run, argv, files, prefix) for name, (argv, prefix) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def _check(proc, code, needle):
    err = proc.stderr
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ignis"), lines[0]
    assert needle in lines[0], (needle, lines[0])
    assert proc.returncode == code, (proc.returncode, err)


@pytest.mark.parametrize("name, argv, code, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_invocation_is_one_line_and_non_zero(results, name, argv, code, needle):
    _check(results[name], code, needle)


def test_unreadable_file(results):
    if UNREADABLE[0] not in results:
        pytest.skip("running as root without setpriv: chmod 000 cannot be made to deny reading")
    _, _, code, needle = UNREADABLE
    _check(results[UNREADABLE[0]], code, needle)


def test_debug_flag_shows_the_traceback(results):
    proc = results["--debug shows the traceback"]
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "GGUFError" in proc.stderr


def test_no_command_prints_usage_and_fails(results):
    proc = results["no command"]
    assert proc.returncode == 2 and "usage: ignis" in proc.stdout and "Traceback" not in proc.stderr
