"""The sampler kernel against an oracle written here in plain Python loops (docs/sampling.md
is the definition both follow). Only the public entry points are called: the expected
values come from the oracle, never from ignis.runtime.sampling's internals.

Floating point: the kernel's weights come from a float32 exp (about 1 ulp), the oracle's
from math.exp in double, so a top-p cut or a draw whose exact cumulative mass lies within a
relative 1e-5 of its target may go either way; the oracle then accepts both neighbours.
Where every weight involved is exactly 1 (every candidate tied with the best) both sides
compute exactly, and the oracle accepts only the exact answer."""
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ignis._kernels import _sample_sort_max, sample_step, sample_uniform
from ignis.errors import ArgumentError, IgnisError, TokenIdError
from ignis.runtime.sampling import Sampler, SamplingParams, sample_rows, sample_rows_at, token_logprobs

M64 = (1 << 64) - 1
F32_MAX = float(np.finfo(np.float32).max)
TOL = 1e-5


# --- the oracle ---------------------------------------------------------------------------

def splitmix_uniform(seed: int, n: int) -> float:
    z = (seed + (n + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return (z >> 11) / 2.0**53


def adjusted_logits(x, p: SamplingParams, history) -> list:
    """Bias, then the penalties over the window, in double, rounded to float32 once."""
    z = [np.float32(v) for v in x]
    penalized = p.repeat_last_n > 0 and (p.repeat_penalty != 1 or p.presence_penalty != 0 or p.frequency_penalty != 0)
    window = list(history[-p.repeat_last_n:]) if penalized and p.repeat_last_n > 0 else []
    counts = Counter(window)
    bias = p.logit_bias or {}
    for t in set(counts) | set(bias):
        v = float(np.float32(x[t])) + float(bias.get(t, 0.0))
        c = counts.get(t, 0)
        if c > 0:
            if p.repeat_penalty != 1:
                v = v / p.repeat_penalty if v > 0 else v * p.repeat_penalty
            v -= c * p.frequency_penalty + p.presence_penalty
        if math.isnan(v):
            v = -F32_MAX
        z[t] = np.float32(min(max(v, -F32_MAX), F32_MAX))
    return z


def rank_order(ids, z) -> list:
    return sorted(ids, key=lambda i: (-float(z[i]), i))


def first_crossing(weights, target, strict, tol):
    """The range [lo, hi] of positions where the cumulative weight first crosses target,
    allowing a relative tol either way (the last position when it never does)."""
    def at(t):
        acc = 0.0
        for j, w in enumerate(weights):
            acc += w
            if (acc > t) if strict else (acc >= t):
                return j
        return len(weights) - 1
    return at(target * (1 - tol)), at(target * (1 + tol))


def oracle(x, p: SamplingParams, history=(), allowed=None):
    """(z, the candidate lists the kernel may end with, zmax): one list unless a top-p cut
    is within rounding of its target. Each list is in rank order."""
    z = adjusted_logits(x, p, list(history))
    ids = range(len(x)) if allowed is None else sorted(allowed)
    order = rank_order(ids, z)
    if p.temperature <= 0:
        return z, [order[:1]], z[order[0]]
    if 0 < p.top_k < len(order):
        order = order[:p.top_k]
    zmax = z[order[0]]
    cuts = [len(order)]
    if p.top_p < 1:
        w = [math.exp(float(np.float32(z[i] - zmax))) for i in order]
        tol = 0.0 if all(v == 1.0 for v in w) else TOL
        lo, hi = first_crossing(w, p.top_p * sum(w), False, tol)
        cuts = list(range(lo + 1, hi + 2))
    options = []
    for c in cuts:
        kept = order[:c]
        if p.min_p > 0:
            kept = [i for i in kept if float(np.float32(z[i] - zmax)) >= math.log(p.min_p)]
        options.append(kept)
    return z, options, zmax


def oracle_picks(z, survivors, zmax, temperature, u) -> set:
    """The tokens the inverse CDF may pick for u (survivors in rank order)."""
    if temperature <= 0:
        return {survivors[0]}
    inv_t = 1.0 / temperature
    w = [math.exp(float(np.float32(float(np.float32(z[i] - zmax)) * inv_t))) for i in survivors]
    tol = 0.0 if all(v == 1.0 for v in w) else TOL
    lo, hi = first_crossing(w, u * sum(w), True, tol)
    return set(survivors[lo:hi + 1])


def mask_of(ids, n):
    words = np.zeros((n + 31) // 32, dtype=np.uint32)
    for i in ids:
        words[i // 32] |= np.uint32(1 << (i % 32))
    return words.view(np.int32)


# --- strategies ---------------------------------------------------------------------------

LEVELS = [-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, 5.0]     # few values: rows full of ties


@st.composite
def sampling_case(draw, max_vocab=40):
    V = draw(st.integers(1, max_vocab))
    x = np.array(draw(st.lists(st.sampled_from(LEVELS), min_size=V, max_size=V)), dtype=np.float32)
    if draw(st.booleans()):
        x = x + np.array(draw(st.lists(st.floats(-0.0625, 0.0625, width=32), min_size=V, max_size=V)), dtype=np.float32)
    p = SamplingParams(
        temperature=draw(st.sampled_from([0.0, 0.3, 1.0, 1.0, 1.7])),
        top_k=draw(st.one_of(st.just(0), st.integers(1, V + 2))),
        top_p=draw(st.one_of(st.just(1.0), st.sampled_from([0.25, 0.5, 0.9]),
                             st.floats(0.01, 1.0, exclude_min=True))),
        min_p=draw(st.one_of(st.just(0.0), st.sampled_from([0.05, 0.5, 1.0]), st.floats(0.0, 1.0))),
        repeat_penalty=draw(st.sampled_from([1.0, 1.0, 1.3, 0.7])),
        repeat_last_n=draw(st.integers(0, 8)),
        presence_penalty=draw(st.sampled_from([0.0, 0.0, 0.5, -1.0])),
        frequency_penalty=draw(st.sampled_from([0.0, 0.0, 0.25])),
        logit_bias=draw(st.one_of(st.none(), st.dictionaries(st.integers(0, V - 1),
                                                              st.sampled_from([-100.0, -1.0, 0.5, 3.0]), max_size=4))),
    )
    history = draw(st.lists(st.integers(0, V - 1), max_size=12))
    allowed = None
    if draw(st.booleans()):
        allowed = draw(st.sets(st.integers(0, V - 1), min_size=1))
    sort_max = draw(st.sampled_from([2048, 0, 1, 3]))     # sort outright, radix only, small heads
    return x, p, history, allowed, sort_max


def run_at(x, p, history, allowed, u, sort_max):
    old = _sample_sort_max()
    _sample_sort_max(sort_max)
    try:
        mask = None if allowed is None else mask_of(allowed, x.size)
        tokens, _, surv = sample_rows_at(x[None, :], [p], [history], [u], masks=[mask], survivors=True)
    finally:
        _sample_sort_max(old)
    return int(tokens[0]), surv[0].tolist()


# --- candidates and the draw ----------------------------------------------------------------

@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=sampling_case(), u=st.floats(0.0, 1.0, exclude_max=True))
def test_candidates_and_draw_match_the_oracle(case, u):
    x, p, history, allowed, sort_max = case
    token, survivors = run_at(x, p, history, allowed, u, sort_max)
    z, options, zmax = oracle(x, p, history, allowed)
    assert survivors in [sorted(o) for o in options], (survivors, options)
    ranked = rank_order(survivors, z)
    assert token in oracle_picks(z, ranked, zmax, p.temperature, u)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sort_max", [2048, 0, 16])
def test_large_rows_match_the_oracle(seed, sort_max):
    """Realistic rows (a peaked head over a wide tail): the head and radix paths."""
    rng = np.random.default_rng(seed)
    V = 3000
    x = (rng.normal(size=V) * 2).astype(np.float32)
    x[rng.choice(V, 20, replace=False)] += rng.uniform(4, 10, size=20).astype(np.float32)
    x[rng.choice(V, 200)] = np.float32(1.5)                     # a block of ties in the bulk
    for T, k, top_p, min_p in [(1.0, 0, 1.0, 0.0), (0.7, 0, 0.9, 0.0), (0.8, 0, 0.95, 0.05), (1.3, 500, 0.99, 0.0),
                               (1.0, 0, 0.999, 0.0), (2.0, 0, 1.0, 0.001)]:
        p = SamplingParams(temperature=T, top_k=k, top_p=top_p, min_p=min_p)
        for u in (0.0, 0.3, 0.9, 0.999, float(rng.uniform())):
            token, survivors = run_at(x, p, [], None, u, sort_max)
            z, options, zmax = oracle(x, p)
            assert survivors in [sorted(o) for o in options]
            assert token in oracle_picks(z, rank_order(survivors, z), zmax, T, u)


def test_exact_ties_at_the_top_p_boundary():
    """Four tied logits (weights exactly 1): top_p 0.5 keeps exactly two, the lower ids."""
    x = np.array([0.0, 2.0, 2.0, -5.0, 2.0, 2.0], np.float32)
    for sort_max in (2048, 0, 1):
        _, surv = run_at(x, SamplingParams(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0), [], [1, 2, 4, 5], 0.0,
                         sort_max)
        assert surv == [1, 2]
        _, surv = run_at(x, SamplingParams(temperature=1.0, top_k=0, top_p=0.51, min_p=0.0), [], [1, 2, 4, 5], 0.0,
                         sort_max)
        assert surv == [1, 2, 4]
        # the draw over two equal weights: u < 0.5 the first, u = 0.5 (cum 1 is not > 1) the second
        p = SamplingParams(temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)
        assert run_at(x, p, [], None, 0.4999, sort_max)[0] == 1
        assert run_at(x, p, [], None, 0.5, sort_max)[0] == 2


def test_greedy_ties_go_to_the_lower_id():
    x = np.array([1.0, 3.0, 0.0, 3.0, 3.0], np.float32)
    g = SamplingParams(temperature=0.0)
    assert run_at(x, g, [], None, 0.9, 2048)[0] == 1
    assert run_at(x, g, [], [3, 4, 0], 0.9, 2048)[0] == 3
    assert run_at(x, g, [], [0, 2], 0.9, 2048)[0] == 0
    assert run_at(np.zeros(70, np.float32), g, [], None, 0.5, 2048)[0] == 0
    assert run_at(np.array([-0.0, 0.0], np.float32), g, [], None, 0.5, 2048)[0] == 0   # -0 ties +0


# --- penalties and logit_bias ---------------------------------------------------------------

def test_penalties_as_llama_cpp_defines_them():
    x = np.array([2.0, -2.0, 1.0, 0.5], np.float32)
    history = [0, 1, 1, 3, 3, 3]
    p = SamplingParams(temperature=0.0, repeat_penalty=2.0, repeat_last_n=64, presence_penalty=0.1,
                       frequency_penalty=0.2)
    z = adjusted_logits(x, p, history)
    # 0: 2/2 - 0.2 - 0.1 = 0.7; 1: -2*2 - 0.4 - 0.1 = -4.5; 2 untouched; 3: 0.5/2 - 0.6 - 0.1 = -0.45
    assert [float(v) for v in z] == pytest.approx([0.7, -4.5, 1.0, -0.45])
    assert run_at(x, p, history, None, 0.0, 2048)[0] == 2
    # the window is the last repeat_last_n tokens only: token 0 leaves it
    p.repeat_last_n = 5
    assert adjusted_logits(x, p, history)[0] == np.float32(2.0)
    assert run_at(x, p, history, None, 0.0, 2048)[0] == 0


def test_logit_bias_comes_before_the_penalties_and_can_ban():
    x = np.array([5.0, 1.0, 0.0], np.float32)
    p = SamplingParams(temperature=0.0, logit_bias={0: -100.0, 2: 1.5}, repeat_penalty=2.0, repeat_last_n=4)
    # 2: (0 + 1.5) / 2 = 0.75 < 1: token 1 wins; without the penalty 1.5 would
    assert run_at(x, p, [2], None, 0.0, 2048)[0] == 1
    assert run_at(x, p, [], None, 0.0, 2048)[0] == 2
    for n in range(50):
        assert run_at(x, SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, logit_bias={0: -100.0}),
                      [], None, splitmix_uniform(3, n), 2048)[0] != 0


# --- randomness -----------------------------------------------------------------------------

def test_uniform_is_splitmix64_of_seed_and_n():
    # SplitMix64 from state 0: the first output is 0xE220A8397B1DCDAF (the published sequence)
    assert sample_uniform(0, 0) == (0xE220A8397B1DCDAF >> 11) / 2.0**53
    for seed in (0, 1, 42, 2**63 + 5, 2**64 - 1):
        for n in (0, 1, 2, 1000, 2**40):
            assert sample_uniform(seed, n) == splitmix_uniform(seed, n)


def test_a_draw_is_a_pure_function_of_seed_and_n():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 200)).astype(np.float32)
    p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=77)
    a, b = Sampler(p), Sampler(SamplingParams(**{**p.__dict__}))
    seq_a = [a(x[0], []) for _ in range(64)]
    seq_b = [b(x[0], []) for _ in range(64)]
    assert seq_a == seq_b and a.n == 64
    # draw n equals the draw at uniform (seed, n), whatever came before
    at = [int(sample_rows_at(x, [p], [[]], [splitmix_uniform(77, n)])[0][0]) for n in range(64)]
    assert at == seq_a
    # different seeds differ
    other = Sampler(SamplingParams(**{**p.__dict__, "seed": 78}))
    assert [other(x[0], []) for _ in range(64)] != seq_a
    # a seed of None picks one once: the sampler keeps it
    c = Sampler(SamplingParams(temperature=1.0, top_k=0, seed=None))
    assert 0 <= c.seed < 2**64 and Sampler(SamplingParams(seed=None)).seed != c.seed


def test_sample_rows_advances_each_sampler_once():
    x = np.zeros((3, 10), np.float32)
    samplers = [Sampler(SamplingParams(temperature=1.0, top_k=0, seed=s)) for s in (1, 2, 3)]
    tokens, info = sample_rows(x, samplers, [[], [], []])
    assert [s.n for s in samplers] == [1, 1, 1] and info == [None, None, None]
    want = [min(int(splitmix_uniform(s, 0) * 10), 9) for s in (1, 2, 3)]     # uniform over 10 ids
    assert tokens.tolist() == want


def _chi_square_p(observed, expected) -> float:
    """Upper tail of the chi-square statistic (Wilson-Hilferty normal approximation)."""
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    k = len(observed) - 1
    zscore = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(zscore / math.sqrt(2))


@pytest.mark.parametrize("T, k, top_p, min_p", [(1.0, 0, 1.0, 0.0), (0.7, 0, 0.9, 0.0), (1.5, 4, 1.0, 0.0),
                                                (1.0, 0, 1.0, 0.1)])
def test_draw_frequencies_fit_the_distribution(T, k, top_p, min_p):
    x = np.array([2.0, 1.5, 1.5, 0.0, -1.0, 0.7, 3.0, -0.2, 1.0, 0.1], np.float32)
    p = SamplingParams(temperature=T, top_k=k, top_p=top_p, min_p=min_p)
    z, options, zmax = oracle(x, p)
    assert len(options) == 1
    survivors = options[0]
    w = [math.exp((float(z[i]) - float(zmax)) / T) for i in survivors]
    probs = {i: v / sum(w) for i, v in zip(survivors, w)}
    N = 40000
    uniforms = [sample_uniform(12345, n) for n in range(N)]
    tokens, _ = sample_rows_at(np.repeat(x[None, :], N, axis=0), [p] * N, [[]] * N, uniforms)
    counts = Counter(tokens.tolist())
    assert set(counts) <= set(survivors)
    ids = sorted(survivors)
    assert _chi_square_p([counts.get(i, 0) for i in ids], [N * probs[i] for i in ids]) > 1e-4


# --- log-probabilities ----------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.sampled_from(LEVELS), min_size=1, max_size=50), data=st.data())
def test_logprobs_are_the_log_softmax_of_the_raw_row(values, data):
    x = np.array(values, np.float32)
    token = data.draw(st.integers(0, x.size - 1))
    top = data.draw(st.integers(0, x.size))
    lp, best = token_logprobs(x, token, top)
    m = max(float(v) for v in x)
    lse = m + math.log(sum(math.exp(float(v) - m) for v in x))
    assert lp == pytest.approx(float(x[token]) - lse, abs=1e-5)
    want = sorted(range(x.size), key=lambda i: (-float(x[i]), i))[:top]
    assert [i for i, _ in best] == want
    assert [v for _, v in best] == pytest.approx([float(x[i]) - lse for i in want], abs=1e-5)


def test_logprobs_per_row_in_a_step():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 1000)).astype(np.float32)
    p = SamplingParams(temperature=0.0, logit_bias={0: 50.0})
    tokens, info = sample_rows_at(x, [p] * 3, [[], [], []], [0.1, 0.2, 0.3], logprobs=[None, 0, 3])
    assert tokens.tolist() == [0, 0, 0] and info[0] is None
    lse = [float(np.log(np.exp(r.astype(np.float64)).sum())) for r in x]
    assert info[1][0] == pytest.approx(float(x[1, 0]) - lse[1], abs=1e-5) and info[1][1] == []   # of the raw row
    assert [i for i, _ in info[2][1]] == np.argsort(-x[2], kind="stable")[:3].tolist()


# --- masks, threads, bad input --------------------------------------------------------------

def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(7, 5000)) * 3).astype(np.float32)
    params = np.tile([0.9, 0.95, 0.02, 1.1, 0.1, 0.1], (7, 1))
    windows = [rng.integers(0, 5000, size=20) for _ in range(7)]
    uniforms = rng.uniform(size=7)
    outs = [sample_step(x, params, np.array([0, 40, 0, 5, 0, 0, 100]), uniforms, windows=windows, n_top=np.full(7, 2),
                        threads=t) for t in (1, 2, 3)]
    for o in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(o[:4], outs[0][:4]))


def test_masked_rows_draw_only_allowed_ids():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=300) * 3).astype(np.float32)
    allowed = sorted(rng.choice(300, 17, replace=False).tolist())
    p = SamplingParams(temperature=1.2, top_k=0, top_p=1.0, min_p=0.0)
    for n in range(200):
        token, surv = run_at(x, p, [], allowed, splitmix_uniform(5, n), 2048)
        assert token in allowed and surv == allowed


def test_bad_input_is_a_typed_one_line_error():
    x = np.zeros((1, 40), np.float32)
    p = SamplingParams(temperature=1.0)
    cases = [
        (lambda: sample_rows_at(np.array([[0.0, np.nan]], np.float32), [p], [[]], [0.5]), IgnisError, "NaN"),
        (lambda: sample_rows_at(np.array([[0.0, np.inf]], np.float32), [p], [[]], [0.5]), IgnisError, "infinity"),
        (lambda: sample_rows_at(x, [SamplingParams(repeat_penalty=1.1)], [[3, 40]], [0.5]), TokenIdError, "40"),
        (lambda: sample_rows_at(x, [SamplingParams(repeat_penalty=1.1)], [[-1]], [0.5]), TokenIdError, "-1"),
        (lambda: sample_rows_at(x, [SamplingParams(logit_bias={40: 1.0})], [[]], [0.5]), TokenIdError, "40"),
        (lambda: sample_rows_at(x, [p], [[]], [1.0]), ArgumentError, "uniforms"),
        (lambda: sample_rows_at(x, [p], [[]], [0.5], masks=[np.zeros(1, np.int32)]), ArgumentError, "mask"),
        (lambda: sample_rows_at(x, [p], [[]], [0.5], masks=[np.zeros(2, np.int32)]), ArgumentError, "allows no"),
        (lambda: sample_rows_at(x, [p], [[]], [0.5], masks=[np.zeros(2, np.float32)]), ArgumentError, "mask"),
        (lambda: sample_rows_at(np.zeros(40, np.float32), [p], [[]], [0.5]), ArgumentError, "2-D"),
        (lambda: sample_rows_at(x, [p, p], [[], []], [0.5, 0.5]), ArgumentError, "per row"),
        (lambda: sample_rows_at(x, [p], [[]], [0.5], logprobs=[41]), ArgumentError, "logprobs"),
        (lambda: sample_step(x, np.zeros((1, 5)), [0], [0.5]), ArgumentError, "params"),
        # sample_step's own row checks (loops in C): each with the one input that breaks only it
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 1.0, 0.0, float("nan")]], [0], [0.5]), ArgumentError, "finite"),
        (lambda: sample_step(x, [[0.8, 1.5, 0.05, 1.0, 0.0, 0.0]], [0], [0.5]), ArgumentError, "top_p"),
        (lambda: sample_step(x, [[0.8, 0.9, -0.1, 1.0, 0.0, 0.0]], [0], [0.5]), ArgumentError, "min_p"),
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 0.0, 0.0, 0.0]], [0], [0.5]), ArgumentError, "repeat_penalty"),
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 1.0, 0.0, 0.0]], [-1], [0.5]), ArgumentError, "top_k"),
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 1.0, 0.0, 0.0]], [0], [float("nan")]), ArgumentError, "uniforms"),
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 1.0, 0.0, 0.0]], [0], [-0.0001]), ArgumentError, "uniforms"),
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 1.0, 0.0, 0.0]], [0], [0.5], n_top=[-2]), ArgumentError, "n_top"),
        (lambda: sample_step(x, [[0.8, 0.9, 0.05, 1.0, 0.0, 0.0]], [0], [0.5], n_top=[41]), ArgumentError, "n_top"),
        (lambda: Sampler(p)(x, []), ArgumentError, "1-D"),
        (lambda: SamplingParams(logit_bias={1: float("nan")}).validate(), ArgumentError, "logit_bias"),
        (lambda: SamplingParams(logit_bias={"a": 1.0}).validate(), ArgumentError, "logit_bias"),
        (lambda: SamplingParams(logit_bias=[1]).validate(), ArgumentError, "logit_bias"),
        (lambda: SamplingParams(logit_bias={5: 1.0}).validate(n_vocab=5), ArgumentError, "logit_bias"),
        (lambda: token_logprobs(x[0], 40, 1), ArgumentError, "token"),
    ]
    for call, kind, word in cases:
        with pytest.raises(kind) as e:
            call()
        message = str(e.value)
        assert word in message and "\n" not in message, message


def test_sampling_params_keep_validating():
    p = SamplingParams(logit_bias={np.int64(3): np.float32(2.5)})
    p.validate(n_vocab=10)
    assert p.logit_bias == {3: 2.5} and type(next(iter(p.logit_bias))) is int
    with pytest.raises(ArgumentError, match="top_p"):
        SamplingParams(top_p=0.0).validate()


@settings(max_examples=100, deadline=None)
@given(case=sampling_case(max_vocab=12), seed=st.integers(0, M64))
def test_sampler_draws_follow_the_counter(case, seed):
    x, p, history, allowed, _ = case
    p.seed = seed
    s = Sampler(p)
    mask = None if allowed is None else mask_of(allowed, x.size)
    got = [s(x, history, mask) for _ in range(3)]
    want = [int(sample_rows_at(x[None, :], [p], [history], [splitmix_uniform(seed, n)], masks=[mask])[0][0])
            for n in range(3)]
    assert got == want and s.n == 3
