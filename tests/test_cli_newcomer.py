"""The command line as a new user types it (issue 24, item 6): an ollama-style model name, a
model without a prompt, --temperature, a misspelt flag, -n -1, -t beyond the cores and -c
beyond the training context. (Piped chat input and /show: tests/test_chat_cli.py.)"""
import re

import pytest

from ignis.cli import main
from ignis.cli.common import cores
from ignis.hub import CATALOGUE

GREEDY = ["--temp", "0", "-t", "1", "--ignore-eos"]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model(seed=3, n_ctx=64)         # trained context: 64 tokens


def _run(argv, capsys, code=0):
    try:
        got = main(argv)
    except SystemExit as e:         # argparse's own errors
        got = e.code
    out = capsys.readouterr()
    assert got == code, out.err
    return out


@pytest.mark.parametrize("word", ["qwen2.5-coder:0.5b", "llama3:8b", "smollm2-135m:q4"])
def test_an_ollama_style_name_is_not_a_prompt(capsys, word, tmp_path, monkeypatch):
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path))          # nothing fetched, nothing cached
    err = _run(["run", word], capsys, code=2).err
    assert err.startswith(f"ignis run: error: '{word}' is not a model ignis knows") and len(err.splitlines()) == 1
    assert all(name in err for name in CATALOGUE), err
    err = _run(["run", word, "hello"], capsys, code=2).err         # with a prompt after it too
    assert "is not a model ignis knows" in err
    assert not list(tmp_path.rglob("*.gguf"))


def test_a_prompt_with_a_colon_is_still_a_prompt(tiny, capsys):
    out = _run(["run", "-m", tiny, "note: hello", "-n", "3", *GREEDY], capsys)
    assert out.out.strip()


def test_a_model_without_a_prompt_suggests_chat(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IGNIS_HOME", str(tmp_path))
    err = _run(["run", "smollm2-135m"], capsys, code=2).err
    assert "ignis chat -m smollm2-135m" in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.rglob("*.gguf"))                    # refused before any fetch


def test_temperature_is_an_alias_of_temp(tiny, capsys):
    base = ["run", "-m", tiny, "-p", "hello", "-n", "8", "-s", "7", "-t", "1", "--ignore-eos"]
    hot = _run([*base, "--temp", "1.3"], capsys).out
    assert _run([*base, "--temperature", "1.3"], capsys).out == hot
    assert _run([*base, "--temperature", "0"], capsys).out == _run([*base, "--temp", "0"], capsys).out


@pytest.mark.parametrize("typo, meant", [("--temprature", "--temperature"), ("--tmep", "--temp"),
                                         ("--ctx-sise", "--ctx-size"), ("--seeed", "--seed")])
def test_an_unknown_flag_names_the_closest_one(tiny, capsys, typo, meant):
    err = _run(["run", "-m", tiny, "-p", "hi", typo, "1"], capsys, code=2).err
    assert err.startswith("ignis run: error: unrecognized arguments") and f"did you mean {meant}?" in err, err
    assert len(err.splitlines()) == 1


def test_chat_flags_are_suggested_by_chat(tiny, capsys):
    err = _run(["chat", "-m", tiny, "--sytem", "be brief"], capsys, code=2).err
    assert err.startswith("ignis chat: error:") and "did you mean --system?" in err, err


def test_n_minus_1_runs_until_the_context_ends_it(tiny, capsys):
    err = _run(["run", "-m", tiny, "-p", "hello", "-n", "-1", "-c", "24", *GREEDY], capsys).err
    assert re.search(r"^ignis: generation stopped at the context limit of 24 tokens", err, re.M), err
    evaluated = re.search(r"eval time += +[\d.]+ ms / +(\d+) tokens", err.splitlines()[-1])
    prompt = re.search(r"prompt eval time += +[\d.]+ ms / +(\d+) tokens", err)
    assert evaluated and prompt and int(prompt.group(1)) + int(evaluated.group(1)) + 1 >= 24, err
    _run(["run", "-m", tiny, "-p", "hello", "-n", "-2"], capsys, code=2)          # -1 only


def test_threads_beyond_the_cores_warn_once(tiny, capsys):
    err = _run(["run", "-m", tiny, "-p", "hi", "-n", "1", "-t", str(cores() + 1), "--temp", "0"], capsys).err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"-t {cores() + 1} is more threads than the {cores()} cores" in warnings[0], err
    err = _run(["run", "-m", tiny, "-p", "hi", "-n", "1", "-t", "1", "--temp", "0"], capsys).err
    assert "warning" not in err, err


def test_a_context_beyond_the_training_context_warns_once(tiny, capsys):
    err = _run(["run", "-m", tiny, "-p", "hi", "-n", "1", "-c", "128", "-t", "1", "--temp", "0"], capsys).err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "-c 128 is more than the 64 tokens this model was trained on" in warnings[0], err
    err = _run(["run", "-m", tiny, "-p", "hi", "-n", "1", "-c", "64", "-t", "1", "--temp", "0"], capsys).err
    assert "warning" not in err, err
