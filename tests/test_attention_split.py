"""A few tokens over a long context split their attention across the threads
(ignis/kernels/attention.pxi attention_split: score units of ATT_CHUNK = 256 positions shared
by the threads, then each token and kv group's softmax and sums). The logits must be the bits
of the unsplit attention, which steps of many tokens take (a prefill chunk: more than
ATT_SPLIT_T = 8 tokens), and of a run on one thread (nothing to split)."""
import contextlib

import numpy as np
import pytest

import ignis
from ignis.testing import EngineSequence

N_CTX = 1400     # the third test holds 100 + 400 + 700 positions at once
LONG = 700          # positions: two whole score chunks and part of a third

MODELS = {
    # G = 3 query heads of 64 per kv head (SmolLM2's shape): two kv groups
    "qwen2 G3": dict(arch="qwen2", n_layers=2, width=384, n_heads=6, n_kv_heads=2, ffn=128, vocab=300,
                     n_ctx=N_CTX),
    # one kv head (Gemma 3 270M's shape); a sliding window that starts inside a score chunk
    "gemma3 window": dict(arch="gemma3", n_layers=3, width=64, n_heads=4, n_kv_heads=1, head_dim=64,
                          window=300, n_ctx=N_CTX),
}


@pytest.fixture(scope="module", params=list(MODELS))
def models(request, tiny_model):
    path = tiny_model(**MODELS[request.param])
    two = ignis.load(path, n_ctx=N_CTX, threads=2)
    one = ignis.load(path, n_ctx=N_CTX, threads=1)
    yield two, one
    two.close()
    one.close()


def _ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=n).tolist()


@contextlib.contextmanager
def _sequences(engine, n=1):
    """n EngineSequences of engine (64-token steps), freed afterwards (the cache holds about
    one long context)."""
    seqs = [EngineSequence(engine, chunk=64) for _ in range(n)]
    try:
        yield seqs
    finally:
        for s in seqs:
            engine.kv.free(s.seq)


def _prefill(engine, ids):
    with _sequences(engine) as (s,):
        return s.forward(ids, 0, all_logits=True)


@pytest.mark.parametrize("tail", [1, 2, 5, 8])
def test_a_few_tokens_past_a_long_context_give_the_bits_of_a_prefill_chunk(models, tail):
    """The last `tail` positions of a long prompt as one step of `tail` tokens (split: at
    most 8 tokens, positions past 256) equal the same positions inside 64-token chunks."""
    two, one = models
    ids = _ids(LONG)
    chunked = _prefill(two.engine, ids)
    for model in (two, one):
        with _sequences(model.engine) as (seq,):
            seq.forward(ids[:-tail], 0)
            seq.chunk = tail
            assert np.array_equal(seq.forward(ids[-tail:], LONG - tail, all_logits=True), chunked[-tail:])


def test_decoding_through_the_chunk_boundaries_keeps_the_bits(models):
    """One token at a time from position 250 to 520: every step's logits equal the prefill's
    (the score chunks of 256 positions begin and end at every alignment on the way)."""
    two, _ = models
    ids = _ids(521, seed=1)
    chunked = _prefill(two.engine, ids)
    with _sequences(two.engine) as (seq,):
        seq.forward(ids[:250], 0)
        seq.chunk = 1
        for p in range(250, 521):
            assert np.array_equal(seq.forward([ids[p]], p), chunked[p]), p


def test_a_batch_of_sequences_of_different_lengths_splits_alike(models):
    """Three sequences' next tokens in one step (lengths 100, 400 and 700: one short, two past
    the split's threshold) equal each sequence's own chunked prefill."""
    two, _ = models
    engine = two.engine
    lengths = (100, 400, 700)
    prompts = [_ids(n, seed=2 + i) for i, n in enumerate(lengths)]
    solo = [_prefill(engine, p)[-1] for p in prompts]
    with _sequences(engine, 3) as seqs:
        for s, p in zip(seqs, prompts):
            s.forward(p[:-1], 0)
            engine.kv.reserve(s.seq, 1)
        out = engine.step([p[-1] for p in prompts], [s.seq for s in seqs], [n - 1 for n in lengths], [0, 1, 2])
    for k in range(3):
        assert np.array_equal(out[k], solo[k]), k
