"""The one engine loop: every way of running the model goes through the scheduler; the
block pool's prefix cache and preemption keep texts identical to solo runs; validation
happens once, in Model.request; an error stays with the request that caused it."""
import gc
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ignis
from ignis.errors import ArgumentTypeError, IgnisError, TokenIdError

SETTINGS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


@pytest.fixture(scope="module")
def tiny_path(tiny_model):
    return tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=5)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    m = ignis.load(tiny_path, n_ctx=512, threads=2)
    yield m
    m.close()


def _prompt(rng, n):
    return rng.integers(0, 256, size=n).tolist()


def _solo(path, prompts, **kw):
    """Each prompt alone on a fresh model (nothing cached, nothing beside it)."""
    with ignis.load(path, n_ctx=512, threads=1) as m:
        out = []
        for p in prompts:
            m.clear_prefix_cache()
            m.generate(p, **kw)
            out.append(list(m.last_result.tokens))
        return out


@pytest.mark.parametrize("greedy", [True, False])
def test_a_pool_too_small_preempts_and_every_text_equals_its_solo_run(tiny_path, greedy):
    """n_ctx 128 for everyone (8 blocks), six requests of 40 prompt + 60 generated tokens:
    at most two fit at once. None fails; each gets its solo tokens."""
    rng = np.random.default_rng(11)
    prompts = [_prompt(rng, 40) for _ in range(6)]
    kw = dict(max_tokens=60, ignore_eos=True, **({"temperature": 0} if greedy else SETTINGS))
    seeds = list(range(100, 106))
    with ignis.load(tiny_path, n_ctx=128, threads=1) as m:
        sched = m.scheduler(max_batch=6)
        handles = sched.submit_many([m.request(p, seed=s, **kw) for p, s in zip(prompts, seeds)])
        for h in handles:
            h.text(timeout=120)
        assert sched.preemptions > 0
        got = [h.result.tokens for h in handles]
        sched.close()
    alone = []
    for p, s in zip(prompts, seeds):
        alone += _solo(tiny_path, [p], seed=s, **kw)
    assert got == alone


def test_prefix_blocks_of_a_finished_request_serve_a_different_later_one(tiny):
    rng = np.random.default_rng(3)
    shared = _prompt(rng, 400)
    tiny.clear_prefix_cache()
    sched = tiny._default_scheduler()
    first = tiny.generate(shared + _prompt(rng, 5), max_tokens=4, temperature=0)
    before = sched.cached_tokens
    other = shared + _prompt(rng, 9)
    second = tiny.generate(other, max_tokens=4, temperature=0)
    assert sched.cached_tokens - before == 400 // 16 * 16        # every full block of the shared part
    assert tiny.last_result.prompt_tokens == len(other) - 400 // 16 * 16
    assert isinstance(first, str)
    assert second == _solo_text(tiny, other)


def _solo_text(model, prompt):
    model.clear_prefix_cache()
    return model.generate(prompt, max_tokens=4, temperature=0)


def test_chat_turns_reuse_the_conversation_so_far(tiny):
    tiny.clear_prefix_cache()
    messages = [{"role": "system", "content": "be brief " * 20}, {"role": "user", "content": "hello there"}]
    reply = tiny.chat(messages, max_tokens=8, temperature=0)
    first = tiny.last_result.prompt_tokens
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "and again"}]
    tiny.chat(messages, max_tokens=8, temperature=0)
    whole = len(tiny.tokenize(tiny.render_chat(messages)))
    assert tiny.last_result.prompt_tokens < whole - first // 2


def test_bad_request_fails_at_once_and_a_running_one_finishes(tiny):
    sched = tiny.scheduler(max_batch=4)
    try:
        ids = [1, 2, 3]
        running = sched.submit(tiny.request(ids, max_tokens=40, temperature=0, ignore_eos=True))
        with pytest.raises(TokenIdError):
            tiny.request([1, 2, 300], max_tokens=4)
        with pytest.raises(IgnisError):
            tiny.request([1, 2, -1], max_tokens=4)
        with pytest.raises(ArgumentTypeError, match="takes a Request"):
            sched.submit([1, 2, 3])
        assert running.text(timeout=60) == tiny.generate(ids, max_tokens=40, temperature=0, ignore_eos=True)
        assert running.error is None and len(running.result.tokens) == 40
    finally:
        sched.close()


class _FailingConstraint:
    """A constraint whose mask raises once generation has started: an exception inside one
    request's sampler."""

    def start(self):
        return self

    def begin(self):
        pass

    def next_mask(self):
        raise RuntimeError("planted failure in the sampler")


def test_an_exception_in_one_requests_sampler_ends_that_request_only(tiny):
    sched = tiny.scheduler(max_batch=4)
    try:
        with tiny._lock:
            good = sched.submit(tiny.request([5, 6, 7], max_tokens=20, temperature=0, ignore_eos=True))
            bad = sched.submit(tiny.request([5, 6, 8], max_tokens=20, temperature=0, constraint=_FailingConstraint()))
        with pytest.raises(IgnisError, match="planted failure"):
            bad.text(timeout=60)
        assert "\n" not in str(bad.error)
        assert good.text(timeout=60) == tiny.generate([5, 6, 7], max_tokens=20, temperature=0, ignore_eos=True)
    finally:
        sched.close()


def test_completions_of_one_request_short_of_memory_preempt_each_other(tiny_path):
    """n completions outgrowing the pool together: one of them is preempted and recomputed
    later (they had one arrival, so each waited for the other to be preempted: a hang the
    HTTP fuzzer found with n = 3 and no max_tokens under a 256-token context)."""
    prompt = [7, 8, 9, 10, 11]
    with ignis.load(tiny_path, n_ctx=64, threads=1) as m:
        sched = m.scheduler(max_batch=4, step_tokens=64)
        try:
            handles = sched.submit(m.request(prompt, max_tokens=59, n=3, seed=21, ignore_eos=True, **SETTINGS))
            texts = [h.text(timeout=120) for h in handles]
            assert all(h.result.finish_reason == "length" for h in handles)
            assert sched.preemptions > 0
        finally:
            sched.close()
        solo = []
        for i in range(3):
            m.clear_prefix_cache()
            solo.append(m.generate(prompt, max_tokens=59, seed=21 + i, ignore_eos=True, **SETTINGS))
    assert texts == solo


def test_a_step_that_decodes_takes_a_short_prompt_chunk(tiny):
    """Chunked prefill beside decodes: once a sequence decodes, a step takes at most
    PROMPT_BESIDE_DECODES prompt tokens (a whole-budget chunk held every stream for the
    length of its prefill); a step with no decode takes the whole budget."""
    from ignis.runtime.scheduler import PROMPT_BESIDE_DECODES as cap
    tiny.clear_prefix_cache()
    rng = np.random.default_rng(11)
    long_ids = _prompt(rng, 400)
    sched = tiny.scheduler(max_batch=4, step_tokens=256)
    try:
        with tiny._lock:      # both arrive before the first step
            short = sched.submit(tiny.request([5, 6, 7], max_tokens=30, temperature=0, ignore_eos=True))
            long = sched.submit(tiny.request(long_ids, max_tokens=3, temperature=0, ignore_eos=True))
        texts = short.text(timeout=60), long.text(timeout=60)
        rest = 400 - 253
        chunks = [cap] * (rest // cap) + ([rest % cap] if rest % cap else [])
        assert sched.step_sizes[:1 + len(chunks)] == [256] + [1 + c for c in chunks]
    finally:
        sched.close()
    tiny.clear_prefix_cache()
    assert texts == (tiny.generate([5, 6, 7], max_tokens=30, temperature=0, ignore_eos=True),
                     tiny.generate(long_ids, max_tokens=3, temperature=0, ignore_eos=True))


def test_a_failing_step_ends_the_request_that_fails_alone(tiny_path):
    """A step that fails is rerun one request at a time: a kernel refusal for one request's
    tokens ends that request; the others go on with their solo tokens."""
    with ignis.load(tiny_path, n_ctx=512, threads=1) as m:
        real_step = m.engine.step

        def step(tokens, seqs, positions, out_rows):
            if 299 in list(tokens):
                raise ValueError("planted kernel refusal")
            return real_step(tokens, seqs, positions, out_rows)

        m.engine.step = step
        sched = m.scheduler(max_batch=4)
        with m._lock:
            good = [sched.submit(m.request([3, 4, k], max_tokens=12, temperature=0, ignore_eos=True)) for k in (5, 6)]
            bad = sched.submit(m.request([3, 4, 299], max_tokens=12, temperature=0, ignore_eos=True))
        with pytest.raises(IgnisError, match="planted kernel refusal"):
            bad.text(timeout=60)
        texts = [h.text(timeout=60) for h in good]
        sched.close()
        m.engine.step = real_step
        m.clear_prefix_cache()
        assert texts == [m.generate([3, 4, k], max_tokens=12, temperature=0, ignore_eos=True) for k in (5, 6)]


def test_an_abandoned_stream_is_cancelled_and_never_stalls_the_loop(tiny):
    sched = tiny._default_scheduler()
    stream = tiny.generate([9, 9, 9], max_tokens=400, ignore_eos=True, stream=True, **SETTINGS)
    next(stream)
    result = tiny.last_result
    del stream
    gc.collect()
    deadline = time.time() + 30
    while result.finish_reason != "cancelled" and time.time() < deadline:
        time.sleep(0.01)
    assert result.finish_reason == "cancelled" and len(result.tokens) < 400
    assert not sched._running or all(s.handle.result is not result for s in sched._running)
    # and a consumer on another thread, while this one generates too
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("a", tiny.generate([4, 4], max_tokens=9, temperature=0)))
    t.start()
    b = tiny.generate([4, 5], max_tokens=9, temperature=0)
    t.join(60)
    assert out["a"] == tiny.generate([4, 4], max_tokens=9, temperature=0) and isinstance(b, str)


def test_every_entry_point_runs_through_the_scheduler(tiny):
    sched = tiny._default_scheduler()
    steps = sched.steps
    ids = [7, 8, 9, 10, 11]
    rows = tiny.logits(ids)
    assert rows.shape == (5, 300) and sched.steps > steps
    steps = sched.steps
    tiny.reset()
    last = tiny.eval(ids)
    assert np.array_equal(last, rows[-1]) and sched.steps > steps and tiny.n_past == 5
    steps = sched.steps
    nxt = tiny.eval([12])                     # the session continues: one token computed
    assert sched.steps == steps + 1 and tiny.n_past == 6
    assert np.array_equal(nxt, tiny.logits(ids + [12])[-1])
    g = tiny.greedy_ids(ids, 3, stop_ids=())
    assert g == [int(np.argmax(rows[-1]))] + g[1:] and len(g) == 3


@pytest.mark.parametrize("how", ["generate_batch", "submit_many", "embed"])
def test_what_is_submitted_together_starts_in_one_step(tiny, monkeypatch, how):
    """A batch (generate_batch, Scheduler.submit_many, embeddings of several texts) is taken by
    the loop in one step, even when the loop wakes and runs between two of its requests (here:
    every wake-up is followed by 50 ms in which the loop has the CPU)."""
    sched = tiny._default_scheduler()
    cls = type(sched)
    real_wake, real_run = cls._wake, cls._run
    widths = []

    def wake_then_yield(self):
        real_wake(self)
        time.sleep(0.05)

    def run(self, batch):
        widths.append(len(batch))
        return real_run(self, batch)
    monkeypatch.setattr(cls, "_wake", wake_then_yield)
    monkeypatch.setattr(cls, "_run", run)
    prompts = [[3, 4, 5], [6, 7, 8, 9], [10, 11]]
    if how == "generate_batch":
        tiny.generate_batch(prompts, max_tokens=3, temperature=0, ignore_eos=True)
    elif how == "submit_many":
        handles = sched.submit_many([tiny.request(p, max_tokens=3, temperature=0, ignore_eos=True)
                                     for p in prompts])
        assert [len(h.text(timeout=30)) >= 0 for h in handles] == [True] * 3
    else:
        tiny.embed(["a b", "c d e", "f"])
    assert widths[0] == 3, widths


def test_n_completions_when_the_first_ends_on_its_first_token(tiny):
    """n > 1 where the first completion stops at once (max_tokens 1, or a stop string hit by
    its first token): every handle ends exactly once, with its own tokens."""
    sched = tiny.scheduler(max_batch=4)
    try:
        hs = sched.submit(tiny.request([1, 2, 3], max_tokens=1, n=3, seed=1, **SETTINGS))
        assert all(len(h.text(timeout=30)) >= 0 and len(h.result.tokens) == 1 for h in hs)
        hs = sched.submit(tiny.request([1, 2, 3], max_tokens=8, n=3, seed=1, ignore_eos=True, **SETTINGS))
        texts = [h.text(timeout=30) for h in hs]
        stop = texts[0][:1]
        hs = sched.submit(tiny.request([1, 2, 3], max_tokens=8, n=3, seed=1, ignore_eos=True, stop=[stop], **SETTINGS))
        for h, full in zip(hs, texts):
            got = h.text(timeout=30)
            assert got == full.split(stop)[0] if stop in full else got == full
        assert sched.n_running == 0 and sched.n_waiting == 0
    finally:
        sched.close()


def test_gemma_windowed_pool_serves_a_shared_prefix_longer_than_the_window(tmp_path):
    """Gemma 3's sliding-window layers keep only their window per sequence; the prefix cache
    still serves a later request: the full pool's blocks of the whole prefix and the windowed
    pool's blocks of its last window. The text is the solo one."""
    from ignis.testing import tiny_gemma3_config, write_model
    path = str(write_model(tmp_path / "g.gguf", tiny_gemma3_config(n_layers=3, window=8, n_ctx=256), {}, seed=3))
    rng = np.random.default_rng(4)
    shared = _prompt(rng, 100)
    a, b = shared + _prompt(rng, 5), shared + _prompt(rng, 7)
    with ignis.load(path, n_ctx=256, threads=1) as m:
        m.generate(a, max_tokens=6, temperature=0, ignore_eos=True)
        sched = m._default_scheduler()
        before = sched.cached_tokens
        text = m.generate(b, max_tokens=6, temperature=0, ignore_eos=True)
        assert sched.cached_tokens - before == 96       # 6 full blocks of the shared 100 tokens
        m.clear_prefix_cache()
        assert text == m.generate(b, max_tokens=6, temperature=0, ignore_eos=True)
        assert m.last_result.prompt_tokens == len(b)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_n_completions_property(tiny, data):
    """n completions of each request, whatever the first does (ends on its first token, hits
    a stop string, completes a regex), under random arrival: every handle ends exactly once,
    with the tokens of its solo run (seed + i)."""
    import queue
    from ignis.runtime.scheduler import END_OF_STREAM
    n_req = data.draw(st.integers(1, 3), label="requests")
    specs = []
    for r in range(n_req):
        specs.append(dict(
            prompt=data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=12), label=f"prompt{r}"),
            n=data.draw(st.integers(1, 4), label=f"n{r}"),
            max_tokens=data.draw(st.integers(0, 6), label=f"max_tokens{r}"),
            stop=data.draw(st.lists(st.sampled_from(["a", "b", " ", "ab", "\n"]), max_size=2), label=f"stop{r}"),
            regex=data.draw(st.sampled_from([None, r"[0-9]", r"[ab]{1,3}", r"x|yy"]), label=f"regex{r}"),
            seed=data.draw(st.integers(0, 1000), label=f"seed{r}"),
            delay=data.draw(st.integers(0, 3), label=f"delay{r}")))
    sched = tiny.scheduler(max_batch=4)
    events = queue.Queue()
    try:
        handles = []
        for r, spec in enumerate(specs):
            deadline = time.time() + 10
            while sched.steps < spec["delay"] and time.time() < deadline and any(not h.done for h in handles):
                time.sleep(0.001)
            req = tiny.request(spec["prompt"], max_tokens=spec["max_tokens"], stop=spec["stop"], regex=spec["regex"],
                               seed=spec["seed"], n=spec["n"], **SETTINGS)
            got = sched.submit(req, sink=events, tag=[(r, i) for i in range(spec["n"])])
            handles += got if isinstance(got, list) else [got]
        for h in handles:
            h.text(timeout=60)
        ends = {}
        while not events.empty():
            tag, piece = events.get_nowait()
            if piece is END_OF_STREAM:
                ends[tag] = ends.get(tag, 0) + 1
        assert sorted(ends) == sorted((r, i) for r, s in enumerate(specs) for i in range(s["n"]))
        assert set(ends.values()) == {1}
        k = 0
        for r, spec in enumerate(specs):
            for i in range(spec["n"]):
                tiny.generate(spec["prompt"], max_tokens=spec["max_tokens"], stop=spec["stop"], regex=spec["regex"],
                              seed=spec["seed"] + i, **SETTINGS)
                assert handles[k].result.tokens == tiny.last_result.tokens, (r, i)
                assert handles[k].text() == tiny.last_result.text, (r, i)
                k += 1
        assert sched.n_running == 0 and sched.n_waiting == 0
    finally:
        sched.close()
