"""Many sequences at once: batched steps through the kernels, the continuous-batching
scheduler, and batch invariance (a request's tokens do not depend on what ran beside it,
the batch size or when it arrived)."""
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ignis
from ignis.errors import IgnisError
from ignis.testing import make_tiny_qwen2

SETTINGS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(make_tiny_qwen2(tmp_path_factory.mktemp("batch") / "tiny.gguf", n_layers=2, width=64,
                               n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=3))


@pytest.fixture(scope="module")
def tiny(tiny_path):
    m = ignis.load(tiny_path, n_ctx=512, threads=2)
    yield m
    m.close()


def _prompt(rng, n):
    return rng.integers(0, 256, size=n).tolist()


def test_engine_step_rows_equal_single_sequence_forward(tiny):
    """Three sequences of different lengths in one interleaved batch: each one's last-row
    logits equal its own single-sequence forward, bit for bit."""
    rng = np.random.default_rng(0)
    prompts = [_prompt(rng, n) for n in (5, 11, 2)]
    solo = []
    for p in prompts:
        tiny.reset()
        solo.append(tiny.eval(p))
    kv = tiny.engine.kv
    seqs = [kv.new_sequence() for _ in prompts]
    try:
        order = [(s, i) for s, p in enumerate(prompts) for i in range(len(p))]
        order = [order[j] for j in rng.permutation(len(order))]
        # a sequence's tokens keep their order among themselves
        nxt = [0] * len(prompts)
        tokens, seq_ids, positions = [], [], []
        for s, _ in order:
            tokens.append(prompts[s][nxt[s]])
            seq_ids.append(seqs[s])
            positions.append(nxt[s])
            nxt[s] += 1
        for s, p in zip(seqs, prompts):
            kv.reserve(s, len(p))
        last = [max(j for j, (s, _) in enumerate(order) if s == k) for k in range(len(prompts))]
        out = tiny.engine.step(tokens, seq_ids, positions, last)
        for k in range(len(prompts)):
            assert np.array_equal(out[k], solo[k]), k
    finally:
        for s in seqs:
            kv.free(s)


def test_generate_batch_equals_one_by_one(tiny):
    rng = np.random.default_rng(1)
    prompts = [_prompt(rng, n) for n in (3, 17, 8, 1, 30, 5)]
    for settings_ in ({"temperature": 0}, dict(SETTINGS, seed=11)):
        alone = [tiny.generate(p, max_tokens=12, ignore_eos=True, **settings_) for p in prompts]
        together = tiny.generate_batch(prompts, max_tokens=12, ignore_eos=True, **settings_)
        assert together == alone
    # a different seed gives a different text (the seed reaches every request)
    other = tiny.generate_batch(prompts, max_tokens=12, ignore_eos=True, **dict(SETTINGS, seed=12))
    assert other != together


def test_generate_batch_streams_every_index(tiny):
    prompts = ["ab cd", "ef", "gh ij kl"]
    texts = tiny.generate_batch(prompts, max_tokens=8, temperature=0, ignore_eos=True)
    got = ["", "", ""]
    for i, piece in tiny.generate_batch(prompts, max_tokens=8, temperature=0, ignore_eos=True, stream=True):
        got[i] += piece
    assert got == texts and all(texts)


def test_per_request_seeds(tiny):
    prompts = ["abc"] * 3
    out = tiny.generate_batch(prompts, max_tokens=10, ignore_eos=True, seed=[1, 2, 1], **SETTINGS)
    assert out[0] == out[2] and out[0] != out[1]
    assert out[1] == tiny.generate("abc", max_tokens=10, ignore_eos=True, seed=2, **SETTINGS)


def test_cancel_stops_one_request_and_the_others_go_on(tiny):
    sched = tiny.scheduler(max_batch=4)
    try:
        ids = tiny.tokenize("hello there")
        with tiny._lock:       # both queued before a step runs
            a = sched.submit(tiny.request(ids, max_tokens=200, temperature=0, ignore_eos=True))
            b = sched.submit(tiny.request(ids, max_tokens=20, temperature=0, ignore_eos=True))
            a.cancel()
        assert b.text(timeout=60) == tiny.generate(ids, max_tokens=20, temperature=0, ignore_eos=True)
        a.text(timeout=60)
        assert a.finish_reason == "cancelled" and len(a.result.tokens) < 200
        # what is left holding blocks: the padding sequence and parked sessions only; finished
        # requests left their full blocks in the prefix cache, held by nobody
        kv = tiny.engine.kv
        parked = {s.seq for sc in tiny._schedulers for s in sc._parked}
        assert set(kv.sequences()) == {tiny.engine._pad_seq} | parked
    finally:
        sched.close()


def test_a_full_kv_cache_preempts_and_every_request_completes(tiny_path):
    # 4 blocks of 16 for everyone: two 20-token prompts cannot both grow to 50 positions; the
    # later one is preempted, recomputed once the first is done, and gives its solo text
    m = ignis.load(tiny_path, n_ctx=64, threads=1)
    try:
        sched = m.scheduler(max_batch=2)
        rng = np.random.default_rng(2)
        prompts = [_prompt(rng, 20) for _ in range(2)]
        # both queued before any step runs (steps take the model's lock): on a loaded machine
        # the first could otherwise decode far enough alone that the second fits after it
        with m._lock:
            hs = [sched.submit(m.request(p, max_tokens=30, temperature=0, ignore_eos=True)) for p in prompts]
        texts = [h.text(timeout=60) for h in hs]
        assert sched.preemptions >= 1
        assert all(len(h.result.tokens) == 30 for h in hs)
        sched.close()
        m.clear_prefix_cache()
        assert texts == [m.generate(p, max_tokens=30, temperature=0, ignore_eos=True) for p in prompts]
    finally:
        m.close()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_batch_invariance_under_random_arrivals(tiny, data):
    """Random prompts, lengths, budgets, batch limits and arrival steps: every request's
    tokens equal its solo run's."""
    n = data.draw(st.integers(2, 6))
    lengths = data.draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    budgets = data.draw(st.lists(st.integers(1, 16), min_size=n, max_size=n))
    arrivals = data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    seeds = data.draw(st.lists(st.integers(0, 2 ** 32 - 1), min_size=n, max_size=n))
    greedy = data.draw(st.booleans())
    max_batch = data.draw(st.integers(1, 4))
    step_tokens = data.draw(st.sampled_from([max_batch, 8, 32, 256]))
    rng = np.random.default_rng(sum(lengths))
    prompts = [_prompt(rng, k) for k in lengths]
    kw = {"temperature": 0} if greedy else SETTINGS
    alone = []
    for p, b, s in zip(prompts, budgets, seeds):
        tiny.generate(p, max_tokens=b, ignore_eos=True, seed=s, **kw)
        alone.append(list(tiny.last_result.tokens))
    sched = tiny.scheduler(max_batch=max_batch, step_tokens=max(step_tokens, max_batch))
    try:
        handles = [None] * n
        for i in sorted(range(n), key=lambda i: arrivals[i]):
            deadline = time.time() + 30
            while sched.steps < arrivals[i] and time.time() < deadline and any(
                    h is not None and not h.done for h in handles):
                time.sleep(0.001)
            handles[i] = sched.submit(tiny.request(prompts[i], max_tokens=budgets[i], ignore_eos=True,
                                                   seed=seeds[i], **kw))
        for i, h in enumerate(handles):
            h.text(timeout=60)
            assert h.result.tokens == alone[i], i
    finally:
        sched.close()


def test_scheduler_submission_is_thread_safe(tiny):
    sched = tiny.scheduler(max_batch=8)
    results, errors = {}, []

    def worker(k):
        try:
            h = sched.submit(tiny.request([1 + k, 2, 3], max_tokens=6, temperature=0, ignore_eos=True))
            results[k] = h.text(timeout=60)
        except Exception as e:       # noqa: BLE001 (reported below)
            errors.append(e)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and len(results) == 8
        for k in range(8):
            assert results[k] == tiny.generate([1 + k, 2, 3], max_tokens=6, temperature=0, ignore_eos=True)
    finally:
        sched.close()


def test_bad_batch_arguments_are_clear_errors(tiny):
    with pytest.raises(IgnisError):
        tiny.generate_batch("not a list")
    with pytest.raises(IgnisError):
        tiny.generate_batch([])
    with pytest.raises(IgnisError, match="seeds"):
        tiny.generate_batch(["a", "b"], seed=[1])
    with pytest.raises(IgnisError):
        tiny.generate_batch(["a", 5])
    with pytest.raises(IgnisError):
        tiny.scheduler(max_batch=0)


REAL_PROMPTS = [
    "def fibonacci(n):",
    "<|im_start|>user\nWrite a haiku about compilers.<|im_end|>\n<|im_start|>assistant\n",
    "# Binary search in Python\n",
    "The three laws of thermodynamics are",
    "<|im_start|>user\n用一句话解释递归。<|im_end|>\n<|im_start|>assistant\n",
    "SELECT name, COUNT(*) FROM orders",
    "import numpy as np\n\ndef softmax(x):",
    "Once upon a time, in a small village,",
]


@pytest.mark.real
@pytest.mark.slow
def test_real_model_batch_equals_one_by_one(real_q8_0_path):
    m = ignis.load(real_q8_0_path, n_ctx=2048, threads=2)
    try:
        for kw in ({"temperature": 0}, {"temperature": 0.8, "seed": 1234}):
            alone = [m.generate(p, max_tokens=24, **kw) for p in REAL_PROMPTS]
            together = m.generate_batch(REAL_PROMPTS, max_tokens=24, **kw)
            assert together == alone
            assert all(t.strip() for t in together)
    finally:
        m.close()


def test_n_completions_share_the_prompt_and_equal_solo_runs(tiny):
    rng = np.random.default_rng(5)
    prompt = _prompt(rng, 70)
    sched = tiny.scheduler(max_batch=4)
    try:
        hs = sched.submit(tiny.request(prompt, max_tokens=10, seed=100, ignore_eos=True, n=3, **SETTINGS))
        texts = [h.text(timeout=60) for h in hs]
        for i, h in enumerate(hs):
            tiny.generate(prompt, max_tokens=10, ignore_eos=True, seed=100 + i, **SETTINGS)
            assert h.result.tokens == tiny.last_result.tokens, i
        assert len(set(texts)) > 1          # different seeds, different completions
    finally:
        sched.close()


def test_forked_completions_hold_the_prefix_once(tiny_path):
    """8 completions of a 512-token prompt: KV blocks held at the end, against one sequence."""
    m = ignis.load(tiny_path, n_ctx=1024, threads=1)
    try:
        kv = m.engine.kv
        base = kv.n_used_blocks                     # the padding sequence's block
        prompt = _prompt(np.random.default_rng(6), 512)
        held = {}
        for n in (1, 8):
            sched = m.scheduler(max_batch=8)
            peak = [0]
            m.clear_prefix_cache()
            hs = sched.submit(m.request(prompt, max_tokens=32, temperature=0, ignore_eos=True, n=n))
            hs = hs if isinstance(hs, list) else [hs]
            while not all(h.done for h in hs):
                peak[0] = max(peak[0], kv.n_used_blocks - base)
                time.sleep(0.0005)
            sched.close()
            held[n] = peak[0]
        assert held[8] < 1.5 * held[1], held
        print(f"KV blocks held: 1 sequence {held[1]}, 8 forks {held[8]} ({held[8] / held[1]:.2f}x)")
    finally:
        m.close()


def test_prefix_cache_reuses_a_finished_prompt_and_changes_nothing(tiny):
    rng = np.random.default_rng(9)
    system = _prompt(rng, 100)
    questions = [_prompt(rng, 7), _prompt(rng, 12)]
    tiny.clear_prefix_cache()
    sched = tiny.scheduler(max_batch=2)
    block = tiny.engine.kv.block_size
    try:
        first = sched.submit(tiny.request(system + questions[0], max_tokens=8, temperature=0, ignore_eos=True))
        first.text(timeout=60)
        assert sched.cache_hits == 0
        second = sched.submit(tiny.request(system + questions[1], max_tokens=8, seed=4, ignore_eos=True, **SETTINGS))
        second.text(timeout=60)
        # the shared system prompt's full blocks
        assert sched.cache_hits == 1 and sched.cached_tokens == 100 // block * block
        tiny.clear_prefix_cache()
        tiny.generate(system + questions[1], max_tokens=8, ignore_eos=True, seed=4, **SETTINGS)
        assert second.result.tokens == tiny.last_result.tokens
        # the same prompt again: every full block of all but its last token from the cache
        before = sched.cached_tokens
        again = sched.submit(tiny.request(system + questions[1], max_tokens=8, seed=4, ignore_eos=True, **SETTINGS))
        again.text(timeout=60)
        assert sched.cached_tokens - before == (len(system + questions[1]) - 1) // block * block
        assert again.result.tokens == second.result.tokens
    finally:
        sched.close()


def test_model_generate_reuses_cached_blocks_of_any_earlier_request(tiny_path):
    """Blocks finished requests left in the pool serve a later Model.generate; when the pool
    is full they are evicted (least recently used first) instead of stopping anything."""
    m = ignis.load(tiny_path, n_ctx=64, threads=1)
    try:
        sched = m.scheduler(max_batch=1)
        rng = np.random.default_rng(8)
        prompt = _prompt(rng, 40)
        sched.submit(m.request(prompt, max_tokens=4, temperature=0, ignore_eos=True)).text(timeout=60)
        kv = m.engine.kv
        assert kv.n_cached_blocks == 2 and kv.n_idle_cached_blocks == 2
        assert m.generate(_prompt(rng, 60), max_tokens=2, temperature=0, ignore_eos=True) is not None
        assert m._default_scheduler().cache_hits == 0 and kv.n_cached_blocks <= 3
        sched.close()
    finally:
        m.close()
