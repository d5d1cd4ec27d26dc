"""`ignis run` flags a llama.cpp / ollama user expects: [MODEL] [PROMPT] positionals, -f FILE,
-p -, -e, --ctx-size, -s, --presence/--frequency-penalty, -r, --version, -n 0 timings, Ctrl-C."""
import io
import select
import signal
import subprocess
import sys
import time

import pytest

import ignis
from ignis.cli import main

from helpers import start_slowed_ignis

GREEDY = ["-n", "12", "--temp", "0", "-t", "1", "--ignore-eos"]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=3)


def _run(argv, capsys, code=0):
    try:
        got = main(argv)
    except SystemExit as e:         # argparse's own errors
        got = e.code
    assert got == code, capsys.readouterr().err
    return capsys.readouterr()


def test_positional_model_and_prompt_are_the_flags(tiny, capsys):
    want = _run(["run", "-m", tiny, "-p", "hello world", *GREEDY], capsys).out
    assert want.strip()
    assert _run(["run", tiny, "hello world", *GREEDY], capsys).out == want            # MODEL PROMPT
    assert _run(["run", "-m", tiny, "hello world", *GREEDY], capsys).out == want      # PROMPT
    assert _run(["run", tiny, "-p", "hello world", *GREEDY], capsys).out == want      # MODEL, -p
    other = _run(["run", "-m", tiny, "-p", "goodbye", *GREEDY], capsys).out
    assert other != want                                                              # the prompt matters


@pytest.mark.parametrize("argv, needle", [
    (["run", "{tiny}"], "-p/--prompt"),                           # one model-looking positional: no prompt
    (["run", "smollm2-135m"], "-p/--prompt"),                     # a catalogue name, not fetched
    (["run", "-m", "{tiny}", "{tiny}", "hi"], "give the model once"),
    (["run", "-m", "{tiny}", "-p", "hi", "-f", "x.txt"], "give the prompt once"),
    (["run", "{tiny}", "a", "b"], "at most two positional"),
])
def test_positional_mistakes_are_usage_errors(tiny, capsys, argv, needle):
    err = _run([a.format(tiny=tiny) for a in argv], capsys, code=2).err
    assert err.startswith("ignis run: error:") and needle in err and len(err.splitlines()) == 1, err


def test_prompt_from_file_and_stdin(tiny, capsys, tmp_path, monkeypatch):
    want = _run(["run", "-m", tiny, "-p", "hello world", *GREEDY], capsys).out
    path = tmp_path / "prompt.txt"
    path.write_text("hello world\n")               # one trailing newline is dropped, as llama.cpp's -f
    assert _run(["run", "-m", tiny, "-f", str(path), *GREEDY], capsys).out == want
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello world\n"))
    assert _run(["run", "-m", tiny, "-p", "-", *GREEDY], capsys).out == want
    missing = _run(["run", "-m", tiny, "-f", str(tmp_path / "nope.txt"), *GREEDY], capsys, code=1).err
    assert "nope.txt: No such file or directory" in missing


def test_escape_turns_backslash_n_into_a_newline(tiny, capsys):
    raw = _run(["run", "-m", tiny, "-p", "a\\nb\\tc", "--echo", *GREEDY], capsys).out
    assert raw.startswith("a\\nb\\tc")
    escaped = _run(["run", "-m", tiny, "-p", "a\\nb\\tc", "-e", "--echo", *GREEDY], capsys).out
    assert escaped.startswith("a\nb\tc")
    assert escaped == _run(["run", "-m", tiny, "-p", "a\nb\tc", "--echo", *GREEDY], capsys).out
    from ignis.cli.common import unescape as _unescape
    assert _unescape(r"q\"\'\\x\x41\z") == "q\"'\\xA\\z"


def test_ctx_size_and_s_aliases(tiny, capsys):
    err = _run(["run", "-m", tiny, "-p", "abcdefghijklmnop qrstuvwxyz", "--ctx-size", "4"], capsys, code=1).err
    assert "does not fit in the context of 4 tokens" in err
    sampled = ["-n", "12", "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0", "-t", "1", "--ignore-eos"]
    a = _run(["run", "-m", tiny, "-p", "hello", "--seed", "11", *sampled], capsys).out
    assert _run(["run", "-m", tiny, "-p", "hello", "-s", "11", *sampled], capsys).out == a
    b = _run(["run", "-m", tiny, "-p", "hello", "-s", "12", *sampled], capsys).out
    assert a != b                                                 # the seed is used at all


def test_penalties_reach_generate(tiny, capsys, monkeypatch):
    seen = {}
    original = ignis.Model.generate

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(ignis.Model, "generate", spy)
    _run(["run", "-m", tiny, "-p", "hello", "--presence-penalty", "1.5", "--frequency-penalty", "0.25", *GREEDY],
         capsys)
    assert seen["presence_penalty"] == 1.5 and seen["frequency_penalty"] == 0.25
    _run(["run", "-m", tiny, "-p", "hello", *GREEDY], capsys)
    assert seen["presence_penalty"] == 0.0 and seen["frequency_penalty"] == 0.0
    monkeypatch.undo()
    # greedy with a huge presence penalty never picks a token already in the context: a different text
    plain = _run(["run", "-m", tiny, "-p", "hello", *GREEDY, "-n", "40"], capsys).out
    penalized = _run(["run", "-m", tiny, "-p", "hello", *GREEDY, "-n", "40", "--presence-penalty", "1e6"], capsys).out
    assert plain != penalized
    bad = _run(["run", "-m", tiny, "-p", "hi", "--frequency-penalty", "abc"], capsys, code=2).err
    assert "invalid float value: 'abc'" in bad


def test_reverse_prompt_stops_like_stop(tiny, capsys):
    full = _run(["run", "-m", tiny, "-p", "hello", *GREEDY, "-n", "24"], capsys).out.rstrip("\n")
    stop = full[len(full) // 2]
    by_stop = _run(["run", "-m", tiny, "-p", "hello", *GREEDY, "-n", "24", "--stop", stop], capsys).out
    assert len(by_stop.rstrip("\n")) < len(full)
    assert _run(["run", "-m", tiny, "-p", "hello", *GREEDY, "-n", "24", "-r", stop], capsys).out == by_stop
    both = ["-r", "\x00never", "--reverse-prompt", stop]           # repeatable, mixed with --stop's spelling
    assert _run(["run", "-m", tiny, "-p", "hello", *GREEDY, "-n", "24", *both], capsys).out == by_stop


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"ignis {ignis.__version__}"


@pytest.mark.parametrize("n", ["0", "1"])
def test_no_tokens_no_infinite_rate(tiny, capsys, n):
    err = _run(["run", "-m", tiny, "-p", "hello", "-n", n, "--temp", "0", "-t", "1"], capsys).err
    assert "eval time" in err and "inf" not in err.lower(), err


def test_ctrl_c_during_run_exits_130(tiny):
    # each sampled token waits a little, so the run is still generating when SIGINT arrives
    proc = start_slowed_ignis(["run", "-m", tiny, "-p", "hello", "-n", "100000", "-c", "256", "--temp", "0",
                               "-t", "1", "--ignore-eos"], subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no output within 60 s"
        assert proc.stdout.read1(64)                               # the first piece is out: generating
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode(errors="replace")
    assert proc.returncode == 130, err
    assert "ignis: interrupted" in err and "Traceback" not in err, err


@pytest.mark.real
def test_tokenize_shows_pieces_as_text(real_model_path, capsys):
    out = _run(["tokenize", "-m", real_model_path, "hi\n 世界"], capsys).out
    assert "'世界'" in out and "'\\n'" in out          # text, newline escaped
    assert "b'" not in out and "\\xe4" not in out        # no byte literals


def test_chat_help_states_its_own_default(capsys):
    assert "(default 512)" in _run(["chat", "--help"], capsys).out
    assert "(default 128)" in _run(["run", "--help"], capsys).out
