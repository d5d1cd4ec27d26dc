"""`ignis chat` as a user drives it (a subprocess fed through a pipe): \"\"\" blocks and bracketed
pastes are one message, /set, /show, /clear, /bye, the history trimmed to the context; and
elsewhere: the context limit reported, `ignis bench` progress and spread, `import ignis` from
a source tree without its compiled extensions."""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ignis.cli.chat import fit_history, split_turns
from ignis.cli.chat_input import read_message

from helpers import start_slowed_ignis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=3)


def _ignis(argv, stdin="", tmp_path=None, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if tmp_path is not None:
        env["IGNIS_HOME"] = str(tmp_path)          # nothing written to the user's cache
    return subprocess.run([sys.executable, "-m", "ignis", *argv], input=stdin, capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def _chat(tiny, stdin, tmp_path, *flags):
    proc = _ignis(["chat", "-m", tiny, "-t", "1", "--temp", "0", "-n", "6", "--system", "sys", *flags],
                  stdin, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _shown(stdout: str) -> list:
    """The conversation printed by the last /show: after 'N messages (...)', one line a message,
    '  role: "text"' (the text JSON-quoted)."""
    lines = stdout.splitlines()
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"\d+ messages? \(.*\)", line)]
    assert heads, stdout
    n = int(lines[heads[-1]].split()[0])
    shown = []
    for line in lines[heads[-1] + 1:heads[-1] + 1 + n]:
        role, _, text = line.strip().partition(": ")
        shown.append({"role": role, "content": json.loads(text)})
    return shown


def _setting(stdout: str, name: str) -> str:
    """The value of a setting in the last /show or /set listing."""
    values = re.findall(rf"^{name}\s+(\S.*)$", stdout, re.M)
    assert values, stdout
    return values[-1]


# -- multi-line input --------------------------------------------------------------------------

def test_triple_quote_block_is_one_message(tiny, tmp_path):
    stdin = '"""\ndef f(x):\n    /not a command\n    return x\n"""\n"""one line"""\n/show\n'
    history = _shown(_chat(tiny, stdin, tmp_path).stdout)
    users = [m["content"] for m in history if m["role"] == "user"]
    assert users == ["def f(x):\n    /not a command\n    return x", "one line"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]


def test_bracketed_paste_is_one_message(tiny, tmp_path):
    stdin = f"{PASTE_START}def g(y):\n/set temperature 9\n    return y{PASTE_END} # typed after\n/show\n"
    out = _chat(tiny, stdin, tmp_path).stdout
    users = [m["content"] for m in _shown(out) if m["role"] == "user"]
    assert users == ["def g(y):\n/set temperature 9\n    return y # typed after"]
    assert _setting(out, "temperature") == "0.0"        # the pasted /set was text, not a command


def test_read_message_edges():
    def reader(lines):
        it = iter(lines)

        def read_line(prompt):
            try:
                return next(it)
            except StopIteration:
                raise EOFError from None
        return read_line
    assert read_message(reader(['"""a', 'b"""'])) == ("a\nb", True)
    assert read_message(reader(['  """x"""'])) == ("x", True)
    assert read_message(reader(['"""kept', "at EOF"])) == ("kept\nat EOF", True)      # nothing lost
    assert read_message(reader([f"{PASTE_START}p{PASTE_END}"])) == ("p", True)
    assert read_message(reader(["/bye"])) == ("/bye", False)
    assert read_message(reader(["from readline\nwith a paste"])) == ("from readline\nwith a paste", True)
    with pytest.raises(EOFError):
        read_message(reader([]))


# -- commands ------------------------------------------------------------------------------------

def test_set_changes_the_sampling_and_bad_values_keep_the_session(tiny, tmp_path):
    greedy = _shown(_chat(tiny, "hello\n/show\n", tmp_path).stdout)[2]["content"]
    # sampling hot, then /set temperature 0: the greedy reply again
    proc = _chat(tiny, "/set temperature 0\nhello\n/show\n", tmp_path, "--temp", "1.5", "-s", "1")
    assert _shown(proc.stdout)[2]["content"] == greedy
    hot = _shown(_chat(tiny, "hello\n/show\n", tmp_path, "--temp", "1.5", "-s", "1").stdout)[2]["content"]
    assert hot != greedy                             # so the /set above is what made it greedy

    stdin = ("/set temperature 0.7\n/set temperature abc\n/set top_k -1\n/set top_p 2\n/set nope 1\n"
             "/set max_tokens 3\n/frobnicate\n/set system be brief\n/show\n")
    proc = _chat(tiny, stdin, tmp_path)
    errors = proc.stderr.splitlines()
    assert "ignis chat: /set temperature: expected a number, got 'abc'" in errors
    assert any(e.startswith("ignis chat: /set top_k: top_k must be") for e in errors), errors
    assert any(e.startswith("ignis chat: /set top_p: top_p must be in (0, 1]") for e in errors), errors
    assert any(e.startswith("ignis chat: /set: unknown setting 'nope'") for e in errors), errors
    assert any(e.startswith("ignis chat: unknown command /frobnicate (/help") for e in errors), errors
    # the good values took, the bad ones changed nothing, and the session went on to /show
    assert _setting(proc.stdout, "temperature") == "0.7"
    assert _setting(proc.stdout, "top_k") == "40" and _setting(proc.stdout, "top_p") == "0.95"
    assert _setting(proc.stdout, "max_tokens") == "3"
    assert _shown(proc.stdout) == [{"role": "system", "content": "be brief"}]


def test_a_constraint_flag_holds_for_every_reply(tiny, tmp_path):
    proc = _chat(tiny, '"""hi"""\n"""again"""\n/show\n', tmp_path, "--regex", "[0-9]{3}", "-n", "8")
    replies = [m["content"] for m in _shown(proc.stdout) if m["role"] == "assistant"]
    assert len(replies) == 2 and all(re.fullmatch(r"[0-9]{3}", r) for r in replies), replies
    assert _setting(proc.stdout, "regex") == "[0-9]{3}"
    bad = _ignis(["chat", "-m", tiny, "--regex", "("], "hi\n", tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("ignis: error: regex") and bad.stdout == "", bad.stderr


def test_help_lists_the_commands(tiny, tmp_path):
    out = _chat(tiny, "/help\n", tmp_path).stdout
    for command in ("/set", "/show", "/clear", "/bye", '"""'):
        assert command in out, out


def test_clear_forgets_the_conversation_but_not_the_system_prompt(tiny, tmp_path):
    alone = _shown(_chat(tiny, "hello\n/show\n", tmp_path).stdout)
    proc = _chat(tiny, "first\nsecond\n/clear\n/show\nhello\n/show\n", tmp_path)
    assert "conversation cleared (the system prompt stays)" in proc.stderr
    shows = proc.stdout.split("temperature   ")       # the two /show listings
    assert _shown(shows[-2]) == [{"role": "system", "content": "sys"}]
    assert _shown(proc.stdout) == alone                # "hello" answered as in a fresh chat


def test_bye_exits_0_and_reads_no_further(tiny, tmp_path):
    proc = _chat(tiny, "/bye\nhello\n/show\n", tmp_path)
    assert proc.stdout == ""                           # no reply, no /show
    assert _chat(tiny, "", tmp_path).stdout == ""      # end of input: exit 0 too


# -- the context ------------------------------------------------------------------------------

def test_history_outgrowing_the_context_drops_the_oldest_turns(tiny, tmp_path):
    stdin = '"""first question"""\n"""second question"""\n"""third question"""\n/show\n'
    proc = _chat(tiny, stdin, tmp_path, "-c", "64", "-n", "8")
    assert re.search(r"^ignis chat: the conversation outgrew the context of 64 tokens: dropped the oldest "
                     r"\d+ turns? \(the system prompt stays\)$", proc.stderr, re.M), proc.stderr
    assert "context limit" not in proc.stderr, proc.stderr      # trimmed before each reply, not after a cut
    history = _shown(proc.stdout)
    assert history[0] == {"role": "system", "content": "sys"}
    assert history[1] == {"role": "user", "content": "third question"}   # the oldest turns went
    assert [m["role"] for m in history] == ["system", "user", "assistant"]


def test_a_message_larger_than_the_context_is_refused_and_the_chat_goes_on(tiny, tmp_path):
    stdin = f'"""hello"""\n"""{"x" * 300}"""\n"""again"""\n/show\n'
    proc = _chat(tiny, stdin, tmp_path, "-c", "64", "-n", "4")
    assert re.search(r"^ignis chat: message not sent: it needs \d+ tokens with the system prompt, more than "
                     r"the context of 64", proc.stderr, re.M), proc.stderr
    users = [m["content"] for m in _shown(proc.stdout) if m["role"] == "user"]
    assert "x" * 300 not in users and users[-1] == "again"


def test_fit_history_keeps_the_system_prompt_and_whole_turns():
    history = [{"role": "system", "content": "s"}]
    for i in range(4):
        history += [{"role": "user", "content": f"u{i}"}, {"role": "assistant", "content": f"a{i}"}]
    history.append({"role": "user", "content": "now"})
    system, turns = split_turns(history)
    assert system == history[:1] and len(turns) == 5 and turns[-1] == [history[-1]]

    def count(messages):                               # 10 "tokens" a message
        return [0] * (10 * len(messages))
    kept, dropped, ids = fit_history(history, count, n_ctx=60, reply_room=5)
    assert dropped == 3 and kept == history[:1] + history[7:] and len(ids) == 40
    kept, dropped, _ = fit_history(history, count, n_ctx=25, reply_room=10)   # newest alone, less room
    assert dropped == 4 and kept == [history[0], history[-1]]
    assert fit_history(history, count, n_ctx=20, reply_room=1) is None        # not even that


def test_hitting_the_context_limit_is_reported(tiny, tmp_path):
    argv = ["run", "-m", tiny, "-p", "hello", "--temp", "0", "-t", "1", "--ignore-eos", "-c", "20"]
    proc = _ignis([*argv, "-n", "100"], tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^ignis: generation stopped at the context limit of 20 tokens", proc.stderr, re.M), proc.stderr
    proc = _ignis([*argv, "-n", "4"], tmp_path=tmp_path)          # the -n budget ended it: no notice
    assert proc.returncode == 0 and "context limit" not in proc.stderr, proc.stderr


def test_a_reply_cut_by_the_context_is_reported_and_the_chat_goes_on(tiny, tmp_path):
    proc = _chat(tiny, "hello\n/show\n", tmp_path, "-c", "40", "-n", "100")
    assert re.search(r"^ignis: generation stopped at the context limit of 40 tokens", proc.stderr, re.M), proc.stderr
    assert [m["role"] for m in _shown(proc.stdout)] == ["system", "user", "assistant"]


def test_ctrl_c_stops_a_reply_and_the_chat_goes_on(tiny, tmp_path):
    # each sampled token waits a little, so the reply is still streaming when SIGINT arrives
    proc = start_slowed_ignis(["chat", "-m", tiny, "-n", "100000", "-c", "4096", "--temp", "0", "-t", "1"],
                              subprocess.PIPE, IGNIS_HOME=str(tmp_path))
    try:
        proc.stdin.write(b'"""hello"""\n')        # a block is a whole message at once
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no reply within 60 s"
        assert proc.stdout.read1(64)                                # the reply is streaming
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(b"/show\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    seen = f"exit {proc.returncode}\nstdout: {out!r}\nstderr: {err!r}"
    assert proc.returncode == 0, seen
    assert "[stopped]" in out and "Traceback" not in err and "context limit" not in err, seen
    history = _shown(out)                                           # /show ran after the Ctrl-C
    assert [m["role"] for m in history] == ["user", "assistant"] and history[1]["content"], seen


def test_no_infinite_rate_anywhere_with_n_0(tiny, tmp_path):
    proc = _ignis(["run", "-m", tiny, "-p", "hello", "-n", "0", "-t", "1"], tmp_path=tmp_path)
    assert proc.returncode == 0 and "eval time" in proc.stderr and "inf" not in proc.stderr.lower(), proc.stderr
    proc = _chat(tiny, "hello\n", tmp_path, "-n", "0")
    assert "inf" not in (proc.stdout + proc.stderr).lower()


# -- bench ---------------------------------------------------------------------------------------

def test_bench_shows_progress_and_the_spread(tiny, tmp_path):
    proc = _ignis(["bench", "-m", tiny, "-p", "16", "-n", "4", "-r", "3", "-t", "1"], tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = re.findall(r"^ignis bench: run (\d)/3: pp16 [\d.]+ tok/s, tg4 [\d.]+ tok/s$", proc.stderr, re.M)
    assert runs == ["1", "2", "3"], proc.stderr
    assert proc.stderr.startswith("ignis bench: warm-up run"), proc.stderr
    rows = re.findall(r"^\| \S+ \| 1 \| (pp16|tg4) \| ([\d.]+) \| ([\d.]+) ± ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$",
                      proc.stdout, re.M)
    assert [r[0] for r in rows] == ["pp16", "tg4"], proc.stdout
    for _, median, mean, stdev, lo, hi in rows:
        median, mean, stdev, lo, hi = map(float, (median, mean, stdev, lo, hi))
        assert lo <= median <= hi and lo <= mean <= hi and stdev >= 0


# -- importing from the source tree --------------------------------------------------------------

def test_import_from_an_unbuilt_source_tree_says_what_to_do(tmp_path):
    tree = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "ignis"), tree / "ignis",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", "import ignis"], capture_output=True, text=True, cwd=tree,
                          env=env, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ignis: ") and "compiled extensions are not built" in last, proc.stderr
    assert "python setup.py build_ext --inplace" in last and "outside the source tree" in last
    assert "circular import" not in proc.stderr


# -- on a terminal: readline --------------------------------------------------------------------

def _readline_with_paste() -> bool:
    """GNU readline 7.0 or later (bracketed paste) is importable."""
    try:
        import readline
    except ImportError:
        return False
    if "libedit" in (readline.__doc__ or ""):
        return False
    major, minor = (int(x) for x in readline._READLINE_LIBRARY_VERSION.split(".")[:2])
    return (major, minor) >= (7, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _readline_with_paste(),
                    reason="needs a pty and GNU readline >= 7.0")
def test_on_a_terminal_readline_keeps_history_and_a_paste_is_one_message(tiny, tmp_path):
    import pty
    pid, fd = pty.fork()
    if pid == 0:                                    # the child: ignis chat on the pty
        os.environ.update(PYTHONPATH=ROOT, IGNIS_HOME=str(tmp_path), TERM="xterm")
        os.execv(sys.executable, [sys.executable, "-m", "ignis", "chat", "-m", tiny, "-n", "3", "--temp", "0",
                                  "-t", "1"])
    seen = b""

    def prompts(n: int, timeout: float = 120):
        """Read until the n-th "> " prompt (readline may write escapes before it)."""
        nonlocal seen
        end = time.monotonic() + timeout
        while seen.count(b"> ") < n and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:                     # the child closed the pty
                    break
        assert seen.count(b"> ") >= n, seen.decode(errors="replace")

    try:
        prompts(1)
        os.write(fd, f"{PASTE_START}def f(x):\r    return x{PASTE_END}\r".encode())
        prompts(2)                                  # the reply came, and the next prompt
        os.write(fd, b"/show\r")
        prompts(3)
        os.write(fd, b"/bye\r")
        _, status = os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(fd)
    text = seen.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert 'user: "def f(x):\\n    return x"' in text, text   # one message
    history = (tmp_path / "chat_history").read_text()
    assert "/show" in history and "/bye" in history, history        # kept for the next session


# -- what a new user types (issue 24) ---------------------------------------------------------------

def test_piped_text_is_one_message_and_blocks_are_one_each(tiny, tmp_path):
    out = _chat(tiny, "line one\nline two\n\nline four\n/show\n", tmp_path).stdout
    assert [m["content"] for m in _shown(out) if m["role"] == "user"] == ["line one\nline two\n\nline four"]
    out = _chat(tiny, 'intro\n"""first"""\n"""second\nstill second"""\nlast\n/show\n', tmp_path).stdout
    users = [m["content"] for m in _shown(out) if m["role"] == "user"]
    assert users == ["intro", "first", "second\nstill second", "last"]


def test_show_is_a_readable_summary(tiny, tmp_path):
    out = _chat(tiny, '"""hello\nthere"""\n/show\n', tmp_path).stdout
    assert "None" not in out and '{"role"' not in out, out
    assert re.search(r"^seed\s+random$", out, re.M), out                   # not Python's None
    assert re.search(r"^3 messages \(1 turn, \d+ tokens of the context's \d+\)$", out, re.M), out
    assert '  user: "hello\\nthere"' in out.splitlines(), out           # one line a message
