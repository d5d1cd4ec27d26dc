"""`ignis perplexity` and ignis.runtime.perplexity: against an independent numpy oracle on a
tiny model, the CLI output, the too-short error, and llama.cpp on the real model."""
import math
from pathlib import Path

import numpy as np
import pytest

import ignis
from ignis.cli import main
from ignis.errors import IgnisError
from ignis.runtime.perplexity import perplexity

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_path(tiny_model):
    return tiny_model(vocab=300, seed=5, n_ctx=256)


def _oracle(model, ids, c, n_chunks):
    """PPL and its error straight from model.logits: mean over every chunk of
    -log softmax(logits[i])[ids[i+1]] for i in [c/2, c-1)."""
    nll = []
    for k in range(n_chunks):
        chunk = ids[k * c:(k + 1) * c]
        logits = model.logits(chunk).astype(np.float64)
        for i in range(c // 2, c - 1):
            row = logits[i]
            lse = math.log(sum(math.exp(v - row.max()) for v in row)) + row.max()
            nll.append(lse - row[chunk[i + 1]])
    nll = np.array(nll)
    ppl = math.exp(nll.mean())
    return ppl, ppl * nll.std() / math.sqrt(len(nll) - 1), len(nll)


def test_matches_numpy_oracle(tiny_path):
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(0, 300, size=3 * 64 + 17)]
    with ignis.load(tiny_path, n_ctx=64, threads=2) as model:
        assert not model.tokenizer.add_bos
        seen = []
        ppl, err, n, per_chunk = perplexity(model, ids, 64, on_chunk=lambda k, p: seen.append((k, p)))
        want_ppl, want_err, want_n = _oracle(model, ids, 64, 3)
        assert n == want_n == 3 * 31
        assert ppl == pytest.approx(want_ppl, rel=1e-9)
        assert err == pytest.approx(want_err, rel=1e-6)
        assert [k for k, _ in seen] == [1, 2, 3] and [p for _, p in seen] == per_chunk
        assert per_chunk[0] == pytest.approx(_oracle(model, ids, 64, 1)[0], rel=1e-9)
        assert per_chunk[-1] == ppl
        two = perplexity(model, ids, 64, max_chunks=2)
        assert two[2] == 2 * 31 and two[0] == pytest.approx(_oracle(model, ids, 64, 2)[0], rel=1e-9)


def test_cli_prints_running_line_and_final_estimate(tiny_path, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    assert main(["perplexity", "-m", tiny_path, "-f", str(text), "-c", "32", "-b", "8", "-t", "2",
                 "--chunks", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    running = [float(part.split("]")[1]) for part in out[0].split(",")]
    assert out[0].startswith("[1]") and ",[2]" in out[0] and ",[3]" in out[0] and len(running) == 3
    assert out[1].startswith("Final estimate: PPL = ")
    ppl, err = (float(x) for x in out[1].split("= ")[1].split(" +/- "))
    assert ppl == pytest.approx(running[-1], abs=1e-4) and err > 0
    assert "scored 45 tokens" in out[2]       # 3 chunks x (32 - 1 - 16)


def test_stdin(tiny_path, monkeypatch, capsys):
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("hello world, " * 60))
    assert main(["perplexity", "-m", tiny_path, "-f", "-", "-c", "16", "--chunks", "1"]) == 0
    assert capsys.readouterr().out.startswith("[1]")


def test_too_short_text_is_one_line_error(tiny_path, tmp_path, capsys):
    text = tmp_path / "short.txt"
    text.write_text("too short")
    assert main(["perplexity", "-m", tiny_path, "-f", str(text), "-c", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ignis: error: the text has ") and "fewer than the 64 of one chunk" in err
    with ignis.load(tiny_path, n_ctx=64, threads=1) as model:
        with pytest.raises(IgnisError, match="the text has 10 tokens, fewer than the 64"):
            perplexity(model, list(range(10)), 64)


def _llama_cpp_ppl(path, ids, c, n_chunks):
    """llama.cpp's PPL of the same chunks through llama-cpp-python (same token ids)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=path, logits_all=True, n_ctx=c, n_batch=c, n_threads=2, verbose=False)
    try:
        nll = []
        for k in range(n_chunks):
            chunk = ids[k * c:(k + 1) * c]
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[:c], dtype=np.float64)
            x = logits[c // 2:c - 1]
            peak = x.max(axis=1, keepdims=True)
            lse = (peak + np.log(np.exp(x - peak).sum(axis=1, keepdims=True)))[:, 0]
            nll.extend(lse - x[np.arange(len(x)), chunk[c // 2 + 1:]])
        return math.exp(float(np.mean(nll)))
    finally:
        llm.close()


@pytest.mark.real
def test_real_model_agrees_with_llama_cpp(real_q8_0_path):
    text = (ROOT / "ignis" / "_neon.h").read_text(encoding="utf-8")
    c, n_chunks = 256, 3
    with ignis.load(real_q8_0_path, n_ctx=c, threads=2) as model:
        from ignis.runtime.perplexity import text_ids
        ids = text_ids(model, text)
        assert len(ids) >= c * n_chunks
        ppl, err, n, _ = perplexity(model, ids, c, max_chunks=n_chunks)
    theirs = _llama_cpp_ppl(real_q8_0_path, ids, c, n_chunks)
    print(f"\nQ8_0, c={c}, {n_chunks} chunks, {n} tokens: ignis PPL = {ppl:.4f} +/- {err:.4f}, "
          f"llama.cpp PPL = {theirs:.4f}, ratio {ppl / theirs:.4f}")
    assert 1 < ppl < 1000
    assert ppl == pytest.approx(theirs, rel=0.02)
