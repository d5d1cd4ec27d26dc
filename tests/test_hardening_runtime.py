"""Runtime edges (issue 7): prompts longer than the context, max_tokens 0 or huge, empty
prompts, Ctrl-C during prefill and during decode (the request is cancelled, the Model stays
usable and its KV cache consistent), two threads on one Model, all on a tiny generated model.
n_past is the eval() context (generation runs in the engine loop and leaves it alone)."""
import random
import signal
import threading
import time

import numpy as np
import pytest

import ignis
from ignis.errors import ContextOverflowError, IgnisError
from ignis.testing import make_tiny_qwen2

N_CTX = 64
PROMPT = "ab cd ef gh ij kl mn op"      # 8 to 20 tokens in the tiny byte-level vocabulary
LONG_IDS = [(7 * i + 3) % 256 for i in range(40)]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return make_tiny_qwen2(tmp_path_factory.mktemp("edges") / "tiny.gguf", n_layers=2, width=64, n_heads=4,
                           n_kv_heads=2, ffn=128, vocab=300, seed=5)


def load(path, n_ctx=N_CTX):
    return ignis.load(path, n_ctx=n_ctx, threads=1)


@pytest.fixture(scope="module")
def fresh(path):
    """What a brand-new model answers (greedy), memoised: (prompt as tuple or str, n) -> text."""
    cache = {}

    def answer(prompt, n):
        key = (tuple(prompt) if isinstance(prompt, list) else prompt, n)
        if key not in cache:
            cache[key] = load(path).generate(prompt, max_tokens=n, temperature=0.0, ignore_eos=True)
        return cache[key]
    return answer


def greedy(model, prompt, n):
    return model.generate(prompt, max_tokens=n, temperature=0.0, ignore_eos=True)


# -- context limits ---------------------------------------------------------------------------

def test_prompt_longer_than_the_context_is_a_clear_error(path, fresh):
    model = load(path, n_ctx=32)
    for call in (lambda: model.generate(LONG_IDS, max_tokens=4),
                 lambda: model.generate(LONG_IDS, max_tokens=4, stream=True),
                 lambda: model.generate("x" * 200, max_tokens=4),
                 lambda: model.logits(LONG_IDS),
                 lambda: model.greedy_ids(LONG_IDS, 4),
                 lambda: model.eval_prompt(LONG_IDS)):
        with pytest.raises(ContextOverflowError, match="40 tokens|200 tokens") as info:
            call()
        assert "32" in str(info.value) and "\n" not in str(info.value)
    assert model.n_past == 0
    assert greedy(model, PROMPT, 5) == load(path, n_ctx=32).generate(PROMPT, max_tokens=5, temperature=0.0,
                                                                    ignore_eos=True)


def test_prompt_filling_the_context_exactly(path):
    model = load(path, n_ctx=40)
    text = model.generate(LONG_IDS, max_tokens=10, temperature=0.0, ignore_eos=True)
    assert len(model.last_result.tokens) == 1       # sampled after the prompt, never evaluated
    assert model.last_result.finish_reason == "length" and isinstance(text, str)
    assert model.last_result.prompt_tokens == 40 and model.last_result.decode_tokens == 0


def test_max_tokens_zero_returns_nothing_and_runs_nothing(path, monkeypatch):
    model = load(path)
    calls = []
    real = model.engine.step
    monkeypatch.setattr(model.engine, "step", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert model.generate(PROMPT, max_tokens=0) == ""
    assert list(model.generate(PROMPT, max_tokens=0, stream=True)) == []
    assert calls == [] and model.n_past == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_max_tokens_must_be_a_count(path, bad):
    with pytest.raises(IgnisError, match="max_tokens"):
        load(path).generate(PROMPT, max_tokens=bad)


def test_huge_max_tokens_stops_at_the_end_of_the_context(path, fresh):
    model = load(path)
    prompt = model.tokenize(PROMPT)
    text = model.generate(prompt, max_tokens=10**12, temperature=0.0, ignore_eos=True)
    result = model.last_result
    assert result.finish_reason == "length"
    assert len(result.tokens) == N_CTX - len(prompt) + 1
    assert result.prompt_tokens + result.decode_tokens == N_CTX
    assert text == fresh(prompt, 10**12)
    pieces = list(model.generate(prompt, max_tokens=10**12, temperature=0.0, ignore_eos=True, stream=True))
    assert "".join(pieces) == text
    # a full context is no obstacle to the next request
    assert greedy(model, PROMPT + " qr", 3) == fresh(PROMPT + " qr", 3)


# -- empty prompts ------------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["generate", "stream", "logits", "greedy_ids", "eval_prompt", "eval"])
@pytest.mark.parametrize("empty", ["", []])
def test_empty_prompt_is_a_clear_error(path, call, empty):
    model = load(path)
    run = {"generate": lambda: model.generate(empty, max_tokens=3),
           "stream": lambda: model.generate(empty, max_tokens=3, stream=True),
           "logits": lambda: model.logits(empty),
           "greedy_ids": lambda: model.greedy_ids(empty, 3),
           "eval_prompt": lambda: model.eval_prompt(model.tokenize(empty) if empty == "" else empty),
           "eval": lambda: model.eval(model.tokenize(empty) if empty == "" else empty)}[call]
    with pytest.raises(IgnisError, match="empty") as info:
        run()
    assert type(info.value) is not ContextOverflowError and "\n" not in str(info.value)
    assert greedy(model, PROMPT, 2) == load(path).generate(PROMPT, max_tokens=2, temperature=0.0, ignore_eos=True)


# -- Ctrl-C -------------------------------------------------------------------------------------

def interrupt_at_step(model, monkeypatch, at):
    """Ctrl-C in the caller while the engine loop runs its at-th step (SIGINT to the main
    thread, as a terminal sends it): the step itself completes (it is on the loop's thread);
    the caller gets KeyboardInterrupt."""
    state = {"steps": 0}
    real = model.engine.step

    def step(*args):
        state["steps"] += 1
        if state["steps"] == at:
            time.sleep(0.05)         # the caller is waiting by now
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(0.05)         # and is interrupted while this step runs
        return real(*args)
    monkeypatch.setattr(model.engine, "step", step)
    return state


def assert_consistent(model, path, fresh):
    """The KV cache holds exactly the keys/values of model's recorded context: continuing
    from it gives what a fresh model computes from scratch."""
    context = list(model._session.tokens)
    if context:
        want = load(path).logits(context)[-1]
        assert np.array_equal(model.logits(context)[-1], want)
    for prompt in (PROMPT, PROMPT + " qr st"):
        assert greedy(model, prompt, 6) == fresh(prompt, 6)


@pytest.mark.parametrize("at", [1, 2, 5])
@pytest.mark.parametrize("stream", [False, True])
def test_ctrl_c_during_a_generation_cancels_it(path, fresh, monkeypatch, at, stream):
    """Step 1 prefills (a 37-token prompt), later steps decode: an interrupt in the caller
    cancels the request at the next step boundary, and the Model answers as a fresh one."""
    model = load(path)
    prompt = LONG_IDS[:37]
    state = interrupt_at_step(model, monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        if stream:
            for _ in model.generate(prompt, max_tokens=30, temperature=0.0, ignore_eos=True, stream=True):
                pass
        else:
            greedy(model, prompt, 30)
    result = model.last_result
    deadline = time.time() + 10
    while result.finish_reason != "cancelled" and time.time() < deadline:
        time.sleep(0.005)
    assert result.finish_reason == "cancelled" and len(result.tokens) <= at + 1
    monkeypatch.undo()
    assert state["steps"] <= at + 2          # nothing ran on for nobody
    assert greedy(model, prompt, 5) == fresh(prompt, 5)
    assert_consistent(model, path, fresh)


def test_ctrl_c_during_eval_keeps_the_context_consistent(path, fresh, monkeypatch):
    """An interrupted eval() leaves the context as it was before it (or as after it, if the
    step had finished): never a context whose KV rows were not computed."""
    model = load(path)
    model.eval_prompt(LONG_IDS[:10])
    interrupt_at_step(model, monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        model.eval(LONG_IDS[10:20])
    monkeypatch.undo()
    time.sleep(0.2)
    assert model.n_past in (10, 20)
    assert_consistent(model, path, fresh)


def test_ctrl_c_while_the_caller_consumes_a_stream(path, fresh):
    """Ctrl-C in the consumer's loop (e.g. while writing to a terminal): closing the stream
    cancels the request; other threads go on; the context stays consistent."""
    model = load(path)
    stream = model.generate(PROMPT, max_tokens=20, temperature=0.0, ignore_eos=True, stream=True)
    with pytest.raises(KeyboardInterrupt):
        for i, _ in enumerate(stream):
            if i == 3:
                raise KeyboardInterrupt
    stream.close()
    out = []
    worker = threading.Thread(target=lambda: out.append(greedy(model, PROMPT, 6)))
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the interrupted stream still holds the Model"
    assert out == [fresh(PROMPT, 6)]
    assert_consistent(model, path, fresh)


def test_ctrl_c_from_a_real_signal_at_random_moments(path, fresh):
    """SIGALRM raising KeyboardInterrupt wherever the main thread is (prefill, decode,
    sampling, detokenizing, taking or releasing the lock): afterwards the Model answers as
    a fresh one. A tiny-model generation takes ~2 ms, so the timers fire within 3 ms."""
    model = load(path)
    prompt = LONG_IDS[:30]
    want = fresh(prompt, 16)
    rng = random.Random(7)

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, raise_interrupt)
    interrupted = completed = 0
    try:
        for _ in range(60):
            if rng.random() < 0.3:
                model.reset()                  # a whole prefill again, not only the cached prefix
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.00005, 0.003))
                    greedy(model, prompt if rng.random() < 0.5 else PROMPT, 16)
                    completed += 1
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except KeyboardInterrupt:
                interrupted += 1
            assert model._lock.acquire(timeout=5), "an interrupt left the Model's lock held"
            model._lock.release()
            assert greedy(model, prompt, 16) == want
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert interrupted >= 5, (interrupted, completed)
    assert_consistent(model, path, fresh)


# -- threads --------------------------------------------------------------------------------------

def run_two_workers(worker, errors) -> None:
    """Run worker(0) and worker(1) in two threads; both must finish without error."""
    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_two_threads_on_one_model_are_serialised(path, fresh):
    model = load(path)
    prompts = [PROMPT, "hello world", LONG_IDS[:25], "zz yy xx"]
    want = {i: fresh(p, 10) for i, p in enumerate(prompts)}
    want_logits = load(path).logits(LONG_IDS[:12])
    results, errors = {}, []

    def worker(k):
        try:
            for rep in range(3):
                for i, p in enumerate(prompts):
                    j = (i + k) % len(prompts)
                    results[(k, rep, j)] = greedy(model, prompts[j], 10)
                    if k == 1:
                        results[(k, rep, "logits")] = model.logits(LONG_IDS[:12])
                    else:   # a stream consumed slowly holds the model for its whole length
                        results[(k, rep, "stream", j)] = "".join(
                            time.sleep(0.001) or piece for piece in model.generate(
                                prompts[j], max_tokens=10, temperature=0.0, ignore_eos=True, stream=True))
        except BaseException as exc:           # noqa: BLE001 -- reported below
            errors.append(exc)

    run_two_workers(worker, errors)
    for key, value in results.items():
        if key[2] == "logits":
            assert np.array_equal(value, want_logits)
        else:
            assert value == want[key[-1]], key


def test_two_models_in_two_threads_run_in_parallel_correctly(path, fresh):
    """Separate Models share no mutable state: concurrent use gives the sequential answers."""
    models = [load(path), load(path)]
    out, errors = {}, []

    def worker(k):
        try:
            for rep in range(3):
                out[(k, rep)] = greedy(models[k], LONG_IDS[:20 + k], 12)
        except BaseException as exc:           # noqa: BLE001
            errors.append(exc)

    run_two_workers(worker, errors)
    for (k, _), value in out.items():
        assert value == fresh(LONG_IDS[:20 + k], 12)


def test_direct_eval_from_another_thread_waits_for_a_generation(path, fresh):
    """eval / eval_prompt / reset from a second thread while the first generates: the lock
    makes them wait, so the generation's output is exactly the single-threaded one (they
    used to run on the same plans and KV cache at the same time)."""
    model = load(path)
    prompt = LONG_IDS[:16]
    want = fresh(prompt, 30)
    stop = threading.Event()
    errors = []

    def meddle():
        try:
            while not stop.is_set():
                model.eval_prompt(LONG_IDS[20:28])
                model.eval([5, 6])
                model.reset()
        except BaseException as exc:           # noqa: BLE001
            errors.append(exc)

    other = threading.Thread(target=meddle)
    other.start()
    try:
        outs = [greedy(model, prompt, 30) for _ in range(4)]
    finally:
        stop.set()
        other.join(60)
    assert not errors, errors
    assert outs == [want] * 4


def test_a_closed_model_says_so(path):
    model = load(path)
    model.close()
    for call in (lambda: model.generate(PROMPT, max_tokens=2), lambda: model.logits([1, 2]),
                 lambda: model.eval([1])):
        with pytest.raises(IgnisError, match="closed"):
            call()
