"""`ignis graph`, `ignis plan`, `ignis run`, `ignis bench` end to end."""
import json
import re
import subprocess
import sys

import pytest

from ignis.cli import main


@pytest.fixture(scope="module")
def tiny_path(tiny_model):
    return tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=3)


def _json(argv, capsys):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_graph_and_plan_on_tiny(tiny_path, capsys, tmp_path):
    g = _json(["graph", "-m", tiny_path, "--json"], capsys)
    assert g["ops"]["fused"] < g["ops"]["unfused"]
    assert g["passes"][-1]["ops_after"] == g["ops"]["fused"]
    none = _json(["graph", "-m", tiny_path, "--json", "--no-fuse"], capsys)
    assert none["ops"]["fused"] == none["ops"]["unfused"] and none["passes"] == []
    p = _json(["plan", "-m", tiny_path, "--json", "--tokens", "8"], capsys)
    assert p["lower_bound_bytes"] <= p["planned_bytes"] < p["naive_bytes"]
    dot, svg = tmp_path / "g.dot", tmp_path / "p.svg"
    assert main(["graph", "-m", tiny_path, "--dot", str(dot), "--print"]) == 0
    assert "rmsnorm" in capsys.readouterr().out
    assert dot.read_text().startswith("digraph")
    assert main(["plan", "-m", tiny_path, "--svg", str(svg)]) == 0
    assert "<svg" in svg.read_text()


def test_unknown_pass_is_a_clear_error(tiny_path, capsys):
    assert main(["graph", "-m", tiny_path, "--passes", "fuse_everything"]) == 1
    assert "fuse_everything" in capsys.readouterr().err


def test_run_streams_and_prints_timings(tiny_path):
    proc = subprocess.run([sys.executable, "-m", "ignis", "run", "-m", tiny_path, "-p", "hello", "-n", "8",
                           "--temp", "0", "-t", "1", "--ignore-eos"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    prompt = re.search(r"^ignis: prompt eval time\s+=\s*[\d.]+ ms /\s*(\d+) tokens", proc.stderr, re.M)
    decode = re.search(r"^ignis: eval time\s+=\s*[\d.]+ ms /\s*(\d+) tokens", proc.stderr, re.M)
    assert prompt and decode, proc.stderr
    assert int(prompt.group(1)) > 0 and int(decode.group(1)) > 0, proc.stderr   # tokens were generated
    assert proc.stdout.strip() != "", repr(proc.stdout)                        # and printed as visible text


def test_bench_json(tiny_path, capsys):
    report = _json(["bench", "-m", tiny_path, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json"], capsys)
    assert set(report) == {"pp_tok_s", "tg_tok_s", "threads", "model", "pp_runs", "tg_runs", "pp_spread",
                           "tg_spread"}
    assert report["pp_tok_s"] > 0 and report["tg_tok_s"] > 0 and report["threads"] == 1
    assert report["pp_runs"] == [report["pp_tok_s"]] and report["tg_spread"]["stdev"] == 0.0   # one run


@pytest.mark.real
@pytest.mark.parametrize("tokens", [1, 512])
def test_real_model_graph_and_plan(real_model_path, capsys, tokens):
    g = _json(["graph", "-m", real_model_path, "--json", "--tokens", str(tokens)], capsys)
    unfused = 532 + (tokens > 1)            # take_last when only the last logits are needed
    assert g["ops"]["unfused"] == unfused
    article = _json(["graph", "-m", real_model_path, "--json", "--tokens", str(tokens),
                     "--passes", "fuse_rmsnorm,fuse_swiglu"], capsys)
    assert article["ops"]["fused"] == unfused - 49 - 24      # the article's two fusions
    assert g["ops"]["fused"] <= 200
    p = _json(["plan", "-m", real_model_path, "--json", "--tokens", str(tokens)], capsys)
    assert p["planned_bytes"] == p["lower_bound_bytes"]
    assert 1 - p["planned_bytes"] / p["naive_bytes"] > 0.76


def test_bench_times_a_computed_prompt(tiny_path):
    """Each timed prefill computes the whole prompt: the prefix cache of the warm-up (which
    holds the same prompt) is emptied between runs, else pp would time cache hits."""
    import ignis
    from ignis.runtime.bench import bench_prompt, forget, measure
    model = ignis.load(tiny_path, n_ctx=64, threads=1)
    evaluated = []

    def eval_ids(ids):
        out = model.eval(ids)
        evaluated.append(model.last_prompt_evaluated)
        return out
    measure(eval_ids, lambda: forget(model), bench_prompt(48, model.n_vocab), 2, repetitions=2)
    # warm-up prompt, warm-up token, then per run: the prompt, then 2 decode tokens
    assert evaluated[2] == 48 and evaluated[5] == 48, evaluated
