"""Exact speculative decoding: whatever is drafted (right, wrong, partly right), the tokens
are plain decoding's, greedy and sampled, with stop strings, penalties and constraints, alone
and in a batch; the KV rows of rejected drafts are dropped."""
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ignis
from ignis.runtime import speculative
from ignis.runtime.speculative import DraftLength, NgramDrafter

SETTINGS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


@pytest.fixture(scope="module")
def tiny(tiny_model):
    path = tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=7)
    m = ignis.load(str(path), n_ctx=512, threads=2)
    yield m
    m.close()


def test_ngram_drafter_proposes_what_followed_the_latest_match():
    toks = [1, 2, 3, 4, 5, 9, 2, 3]
    d = NgramDrafter(toks)
    assert d.propose(3) == [4, 5, 9]          # "2 3" was followed by 4 5 9
    toks += [7]
    assert d.propose(3) == []                 # "3 7" never seen
    toks += [1, 2, 3]
    assert d.propose(2) == [4, 5]             # the longest suffix seen ("1 2 3") wins over a later "2 3"
    assert NgramDrafter([5]).propose(4) == [] and d.propose(0) == []


def test_draft_length_adapts():
    k = DraftLength(most=8)
    k.update(8, 8)
    assert k.k == 8
    k.update(8, 2)
    assert k.k == 3
    k.update(3, 3)
    assert k.k == 5
    k.update(0, 0)
    assert k.k == 5


class _ScriptedDrafter(NgramDrafter):
    """Drafts drawn by the test: right (the plain continuation), wrong, or partly right."""
    plan = []        # per call: a list of tokens, or ("right", k) / ("partly", k, wrong_at)
    truth = []       # the plain continuation after the prompt

    def propose(self, k):
        if not self.plan:
            return []
        kind = self.plan.pop(0)
        done = len(self.tokens) - self.n_prompt
        right = self.truth[done:done + k]
        if kind == "right":
            return right
        if kind == "wrong":
            return [(t + 1) % 256 for t in right] or [5]
        return right[:1] + [(t + 7) % 256 for t in right[1:]]


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_any_draft_gives_the_plain_tokens(tiny, data, monkeypatch):
    prompt = data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=20), label="prompt")
    greedy = data.draw(st.sampled_from([True, False, False]), label="greedy")
    kw = dict(max_tokens=data.draw(st.integers(1, 24) | st.integers(12, 24), label="max_tokens"), ignore_eos=True,
              seed=data.draw(st.integers(0, 99), label="seed"),
              stop=data.draw(st.sampled_from([None, "a", " b"]), label="stop"),
              regex=data.draw(st.sampled_from([None, r"[a-z ]{1,30}"]), label="regex"),
              repeat_penalty=data.draw(st.sampled_from([1.0, 1.3]), label="penalty"),
              **({"temperature": 0} if greedy else SETTINGS))
    tiny.generate(prompt, **kw)
    plain = list(tiny.last_result.tokens)
    _ScriptedDrafter.truth = plain
    _ScriptedDrafter.plan = data.draw(st.lists(st.sampled_from(["right", "wrong", "partly"]), min_size=2,
                                               max_size=12), label="drafts")

    def drafter(tokens):
        d = _ScriptedDrafter(tokens)
        d.n_prompt = len(prompt)
        return d
    monkeypatch.setattr("ignis.runtime.scheduler.NgramDrafter", drafter)
    together = data.draw(st.booleans(), label="in a batch")
    if together:
        texts = tiny.generate_batch([prompt, [9, 8, 7]], speculative="ngram", **kw)
        assert texts[0] == tiny.generate(prompt, **kw)
    else:
        tiny.generate(prompt, speculative="ngram", **kw)
        assert tiny.last_result.tokens == plain
    monkeypatch.undo()


def test_a_planted_rollback_bug_is_caught(tiny, monkeypatch):
    """Keeping one rejected draft row (an off-by-one in the rollback) changes the tokens."""
    from ignis.runtime import scheduler
    real = scheduler.Scheduler._verify

    def verify(self, s, rows, dt):
        real(self, s, rows, dt)
        if s.seq is not None and self.kv.length(s.seq) == s.computed:
            self.kv.reserve(s.seq, 1)           # the row after the last accepted one stays
            s.computed += 1
            s.tokens.insert(s.computed - 1, (s.tokens[-1] + 3) % 256)
    prompt = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    plain = tiny.generate(prompt, max_tokens=16, temperature=0, ignore_eos=True)
    assert tiny.generate(prompt, max_tokens=16, temperature=0, ignore_eos=True, speculative="ngram") == plain
    monkeypatch.setattr(scheduler.Scheduler, "_verify", verify)
    assert tiny.generate(prompt, max_tokens=16, temperature=0, ignore_eos=True, speculative="ngram") != plain


def test_ngram_on_a_repetitive_prompt_accepts_drafts_and_changes_nothing(tiny):
    prompt = [10, 11, 12, 13, 14, 15] * 6
    stats = []
    for kw in ({"temperature": 0}, dict(SETTINGS, seed=3)):
        plain = tiny.generate(prompt, max_tokens=40, ignore_eos=True, **kw)
        fast = tiny.generate(prompt, max_tokens=40, ignore_eos=True, speculative="ngram", **kw)
        assert fast == plain
        stats.append((tiny.last_result.drafted, tiny.last_result.accepted))
    assert stats[0][0] > 0 and all(d >= a >= 0 for d, a in stats), stats


def test_bad_speculative_mode_is_a_clear_error(tiny):
    with pytest.raises(ignis.IgnisError, match="speculative"):
        tiny.request([1, 2], speculative="draft-model-please")
    assert speculative.MODES == ("ngram", "draft")
    with pytest.raises(ignis.ArgumentError, match="needs a draft model"):      # none loaded
        tiny.generate([1, 2], max_tokens=4, speculative="draft")
    with pytest.raises(ignis.IgnisError, match="needs a draft model"):
        tiny.scheduler().submit(dataclasses.replace(tiny.request([1, 2]), speculative="draft"))


def test_the_server_request_field():
    from ignis.serve import protocol
    body = {"prompt": "x", "max_tokens": 4}
    assert protocol.parse(dict(body), "completion", 8).speculative == "default"      # the server's --spec
    assert protocol.parse(dict(body, speculative="ngram"), "completion", 8).speculative == "ngram"
    assert protocol.parse(dict(body, speculative=None), "completion", 8).speculative is None
    assert protocol.parse(dict(body, speculative="draft"), "completion", 8).speculative == "draft"
    with pytest.raises(protocol.APIError, match="speculative"):
        protocol.parse(dict(body, speculative="lookahead"), "completion", 8)


# -- a draft model (speculative="draft") ----------------------------------------------------

@pytest.fixture(scope="module")
def with_drafts(tiny_model):
    """The tiny model twice: drafting for itself (its greedy drafts are always right), and
    with another tiny model of the same vocabulary (different weights: drafts partly right)."""
    main = tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=7)
    other = tiny_model(n_layers=1, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=11)
    models = {name: ignis.load(main, n_ctx=512, threads=2, draft_model=path)
              for name, path in (("self", main), ("other", other))}
    yield models
    for m in models.values():
        m.close()


def _draft_pool_idle(m) -> bool:
    """Every draft session released: nothing parked, no KV block held by a sequence."""
    loop, kv = m.draft.loop, m.draft.model.engine.kv
    return loop.n_parked == 0 and not loop._running and kv.n_used_blocks == _engine_blocks(m.draft.model)


def _engine_blocks(model) -> int:
    """Blocks the engine holds for itself (padding rows), which no request frees."""
    engine, blocks = model.engine, set()
    for name in ("_pad_seq", "seq"):
        seq = getattr(engine, name, None)
        if seq is not None and seq in engine.kv:
            blocks.update(int(b) for b in engine.kv.table(seq) if b >= 0)
    return len(blocks)


PROMPTS = [[1, 2, 3, 4, 5], [40, 41, 42, 43] * 5, [200, 7, 99]]


@pytest.fixture
def cheap_drafts(monkeypatch):
    """Drafts priced as nearly free, so that the tiny models (whose steps are all Python
    overhead) draft at every step and the rejections are exercised."""
    monkeypatch.setattr(speculative.DraftCost, "step_cost", lambda self, k: 1 + 0.05 * k)


@pytest.mark.usefixtures("cheap_drafts")
@pytest.mark.parametrize("which", ["self", "other"])
@pytest.mark.parametrize("kw", [{"temperature": 0}, dict(SETTINGS, seed=5), dict(SETTINGS, seed=6, stop=" b",
                                                                                  repeat_penalty=1.3)],
                         ids=["greedy", "seeded", "seeded-stop-penalty"])
def test_a_draft_model_gives_the_plain_tokens(with_drafts, which, kw):
    m = with_drafts[which]
    for prompt in PROMPTS:
        plain = m.generate(prompt, max_tokens=40, ignore_eos=True, **kw)
        plain_tokens = list(m.last_result.tokens)
        fast = m.generate(prompt, max_tokens=40, ignore_eos=True, speculative="draft", **kw)
        assert fast == plain and m.last_result.tokens == plain_tokens
        r = m.last_result
        assert r.drafted >= r.accepted >= 0
        if which == "self" and kw.get("temperature") == 0:
            # the model drafting for itself: every greedy draft is the plain continuation
            assert r.drafted > 0 and r.accepted == r.drafted, (r.drafted, r.accepted)
    assert _draft_pool_idle(m)


@pytest.mark.parametrize("which", ["self", "other"])
def test_a_draft_model_in_a_batch(with_drafts, which):
    """Several requests draft in one step (one batch in the draft model), beside ngram and
    plain requests; each text is its plain one."""
    m = with_drafts[which]
    kw = dict(max_tokens=32, ignore_eos=True, **SETTINGS)
    seeds = [1, 2, 3]
    plain = [m.generate(p, seed=s, **kw) for p, s in zip(PROMPTS, seeds)]
    assert m.generate_batch(PROMPTS, seed=seeds, speculative="draft", **kw) == plain
    sched = m.scheduler(max_batch=8)
    modes = ["draft", "ngram", None, "draft"]
    prompts = PROMPTS + [[5, 6, 7, 8, 9]]
    handles = [sched.submit(m.request(p, seed=9, speculative=mode, **kw)) for p, mode in zip(prompts, modes)]
    texts = [h.text() for h in handles]
    assert texts == [m.generate(p, seed=9, **kw) for p in prompts]
    assert _draft_pool_idle(m)


def test_drafts_of_a_batch_run_as_one_batch(with_drafts, monkeypatch, cheap_drafts):
    """The draft model gets every drafting request of a step at once (its steps hold them
    all), not one request after the other."""
    m = with_drafts["self"]
    loop = m.draft.loop
    widths = []
    real = type(loop)._run

    def run(self, batch):
        widths.append(len(batch))
        return real(self, batch)
    monkeypatch.setattr(type(loop), "_run", run)
    m.generate_batch(PROMPTS, max_tokens=24, ignore_eos=True, temperature=0, speculative="draft")
    assert max(widths) == len(PROMPTS), widths


def test_every_draft_is_the_draft_models_own_greedy_continuation(with_drafts, tiny_model, monkeypatch,
                                                                  cheap_drafts):
    """What the draft loop proposes (continuing a session rolled back after rejections, in a
    batch) is what the draft model alone continues the same context with."""
    m = with_drafts["other"]
    seen = []
    real = type(m.draft).propose_many

    def spy(self, wanted):
        out = real(self, wanted)
        seen.extend((list(d.tokens), k, draft) for (d, k), draft in zip(wanted, out))
        return out
    monkeypatch.setattr(type(m.draft), "propose_many", spy)
    kw = dict(max_tokens=30, ignore_eos=True)
    m.generate_batch(PROMPTS, temperature=0, speculative="draft", **kw)
    m.generate(PROMPTS[1], seed=4, speculative="draft", **kw, **SETTINGS)
    monkeypatch.undo()
    assert len(seen) > 10
    with ignis.load(m.draft.model.path, n_ctx=512, threads=1) as ref:
        for context, k, draft in seen:
            ref.generate(context, max_tokens=k, temperature=0, ignore_eos=True)
            assert draft == ref.last_result.tokens, (len(context), k)


def test_cancelled_and_ended_requests_release_their_draft_sessions(with_drafts):
    m = with_drafts["other"]
    sched = m.scheduler()
    h = sched.submit(m.request(PROMPTS[1], max_tokens=400, ignore_eos=True, temperature=0, speculative="draft"))
    for i, _ in enumerate(h):
        if i == 5:
            h.cancel()
    h.wait()
    # n completions of one prompt (forked from its sequence): each drafts in a session of its own
    kw = dict(max_tokens=16, n=3, seed=1, stop="a", **SETTINGS)
    plain = [h.text() for h in sched.submit(m.request(PROMPTS[0], **kw))]
    assert [h.text() for h in sched.submit(m.request(PROMPTS[0], speculative="draft", **kw))] == plain
    assert _draft_pool_idle(m)


def test_a_planted_stale_draft_context_is_caught(with_drafts, monkeypatch, cheap_drafts):
    """Plant: the draft model continues the context minus its newest token (a stale one).
    The text stays plain (verification is exact) but the self-draft acceptance test sees it."""
    from ignis.runtime import draft_model
    m = with_drafts["self"]
    m.generate(PROMPTS[0], max_tokens=30, ignore_eos=True, temperature=0, speculative="draft")
    assert m.last_result.accepted == m.last_result.drafted > 0
    real = draft_model.make_request
    monkeypatch.setattr(draft_model, "make_request", lambda ids, **kw: real(ids[:-1], **kw))
    m.generate(PROMPTS[0], max_tokens=30, ignore_eos=True, temperature=0, speculative="draft")
    assert m.last_result.accepted < m.last_result.drafted


def test_a_planted_session_leak_is_caught(with_drafts, monkeypatch):
    from ignis.runtime import draft_model
    m = with_drafts["self"]
    monkeypatch.setattr(draft_model.ModelDrafter, "close", lambda self: None)
    m.generate(PROMPTS[0], max_tokens=12, ignore_eos=True, temperature=0, speculative="draft")
    assert not _draft_pool_idle(m)
    monkeypatch.undo()
    m.draft.loop.close()          # the leak, cleaned up for the next tests
    m.draft.loop._stop = False
    assert _draft_pool_idle(m)


def _tiny_with_vocab(path, swap=False, vocab=300):
    """A tiny model file whose token table has two tokens swapped (same size, other strings)."""
    from ignis import testing
    real = testing.tiny_vocab

    def swapped(n):
        tokens, types, merges = real(n)
        tokens = list(tokens)
        tokens[256], tokens[257] = tokens[257], tokens[256]
        return tokens, types, merges
    if swap:
        testing.tiny_vocab = swapped
    try:
        return testing.make_tiny_qwen2(path, vocab=vocab, seed=7)
    finally:
        testing.tiny_vocab = real


def test_a_draft_model_of_another_vocabulary_is_refused(tiny_model, tmp_path):
    main = tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=7)
    bigger = _tiny_with_vocab(tmp_path / "bigger.gguf", vocab=320)
    swapped = _tiny_with_vocab(tmp_path / "swapped.gguf", swap=True)
    with pytest.raises(ignis.ModelError, match="320 tokens, the model has 300") as exc:
        ignis.load(main, n_ctx=256, threads=1, draft_model=bigger)
    assert "\n" not in str(exc.value)
    with pytest.raises(ignis.ModelError, match="token 256 is") as exc:
        ignis.load(main, n_ctx=256, threads=1, draft_model=swapped)
    assert "\n" not in str(exc.value)
    with pytest.raises(ignis.IgnisError):
        ignis.load(main, n_ctx=256, threads=1, draft_model=str(tmp_path / "missing.gguf"))


def test_draft_cost_decides_the_length():
    cost = speculative.DraftCost(prior=0.4)
    assert speculative.best_length(0.95, 0.1, 10)[0] >= 6           # cheap, good drafts: long
    assert speculative.best_length(0.3, 0.4, 10)[0] == 0            # costly, bad drafts: none
    k = DraftLength(cost=cost)
    for _ in range(6):                                              # nothing accepted: a pause
        k.update(4, 0)
    assert k.want() == 0
    k.pause = 0
    for _ in range(12):
        k.update(k.k, k.k)                                          # all accepted: drafts again
    assert k.want() >= 4


# -- the server: the request field, the usage extension and /metrics over real HTTP ----------

@pytest.fixture(scope="module")
def draft_server(tiny_model):
    pytest.importorskip("uvicorn")
    from test_serve import _Server
    path = tiny_model(n_ctx=2048, seed=3)
    srv = _Server(path, "--spec", "draft", "-md", path)
    yield srv
    code, err = srv.stop()
    assert code == 0 and "Traceback" not in err, err[-2000:]


def test_the_server_reports_drafts_in_usage_and_metrics(draft_server):
    import json as _json

    import httpx
    body = {"model": "tiny", "prompt": "abc abc abc", "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    plain = draft_server.post("/v1/completions", dict(body, speculative=None)).json()
    assert plain["usage"].keys() == {"prompt_tokens", "completion_tokens", "total_tokens"}
    before = (draft_server.metric("ignis_speculative_drafted_tokens_total"),
              draft_server.metric("ignis_speculative_accepted_tokens_total"))
    r = draft_server.post("/v1/completions", body).json()          # the server's --spec draft
    assert r["choices"][0]["text"] == plain["choices"][0]["text"]
    use = r["usage"]
    assert use["drafted_tokens"] > 0 and use["accepted_tokens"] == use["drafted_tokens"]   # the model drafts for itself
    assert use["completion_tokens_details"] == {"accepted_prediction_tokens": use["accepted_tokens"],
                                                "rejected_prediction_tokens": 0}
    after = (draft_server.metric("ignis_speculative_drafted_tokens_total"),
             draft_server.metric("ignis_speculative_accepted_tokens_total"))
    assert after[0] - before[0] == use["drafted_tokens"] and after[1] - before[1] == use["accepted_tokens"]
    # streamed: the same text, the counts in the usage chunk
    stream = dict(body, stream=True, stream_options={"include_usage": True}, speculative="ngram")
    with httpx.stream("POST", draft_server.base + "/v1/completions", json=stream, timeout=30,
                      headers={"Authorization": "Bearer test-key"}) as resp:
        events = [_json.loads(line[6:]) for line in resp.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(c["text"] for e in events for c in e["choices"])
    assert text == plain["choices"][0]["text"]
    use = events[-1]["usage"]
    assert use["drafted_tokens"] >= use["accepted_tokens"] >= 0 and "completion_tokens_details" in use


def test_the_server_refuses_draft_without_a_draft_model(tiny_model):
    pytest.importorskip("uvicorn")
    from test_serve import _Server
    srv = _Server(tiny_model(n_ctx=2048, seed=3), "--spec", "ngram")
    try:
        r = srv.post("/v1/completions", {"model": "tiny", "prompt": "abc", "max_tokens": 4, "speculative": "draft"})
        assert r.status_code == 400 and "draft model" in r.json()["error"]["message"]
        r = srv.post("/v1/completions", {"model": "tiny", "prompt": "abc abc abc", "max_tokens": 8})
        assert r.status_code == 200 and r.json()["usage"]["drafted_tokens"] >= 0
    finally:
        code, err = srv.stop()
    assert code == 0, err[-2000:]


def test_the_cli_flags(tiny_model):
    import subprocess
    import sys
    path = tiny_model(n_ctx=512, seed=3)
    run = [sys.executable, "-m", "ignis", "run", "-m", path, "-p", "abc abc abc", "-n", "12", "--temp", "0",
           "--ignore-eos"]
    plain = subprocess.run(run, capture_output=True, text=True, timeout=120)
    fast = subprocess.run(run + ["-md", path], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and fast.returncode == 0, fast.stderr[-2000:]
    assert fast.stdout == plain.stdout and "drafted" in fast.stderr
    bad = subprocess.run(run + ["--spec", "draft"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "-md MODEL" in bad.stderr and "Traceback" not in bad.stderr


# -- real models -------------------------------------------------------------------------------

REAL_PROMPTS = [
    "Rename the function `propose` to `suggest` in this code and give the whole code back:\n\n```python\n"
    + NgramDrafter.propose.__doc__ + "\ndef propose(self, k):\n    if k <= 0:\n        return []\n"
    "    self._index()\n    toks = self.tokens\n    for n in range(4, 1, -1):\n"
    "        at = self._next.get(tuple(toks[len(toks) - n:]))\n        if at is not None:\n"
    "            return toks[at:at + k]\n    return []\n```",
    "Write a Python function that checks whether a string is a palindrome.",
    "List the planets of the solar system, one per line.",
]


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("kw", [{"temperature": 0}, {"temperature": 0.8, "seed": 42}], ids=["greedy", "t0.8"])
def test_real_model_ngram_gives_the_plain_text(real_model_path, kw):
    with ignis.load(real_model_path, n_ctx=2048, threads=2) as m:
        drafted = 0
        for prompt in REAL_PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            plain = m.chat(messages, max_tokens=96, **kw)
            assert m.chat(messages, max_tokens=96, speculative="ngram", **kw) == plain
            drafted += m.last_result.drafted
        assert drafted > 0


@pytest.mark.real
@pytest.mark.slow
def test_real_draft_model_gives_the_plain_text(real_model_path, real_q8_0_path):
    """The default model with its Q8_0 copy as the draft (the same vocabulary)."""
    with ignis.load(real_model_path, n_ctx=2048, threads=2, draft_model=real_q8_0_path) as m:
        for kw in ({"temperature": 0}, {"temperature": 0.8, "seed": 42}):
            for prompt in REAL_PROMPTS[:2]:
                messages = [{"role": "user", "content": prompt}]
                plain = m.chat(messages, max_tokens=64, **kw)
                assert m.chat(messages, max_tokens=64, speculative="draft", **kw) == plain
                assert m.last_result.accepted > 0
        assert _draft_pool_idle(m)


@pytest.mark.real
@pytest.mark.slow
def test_real_server_spec_ngram_streamed_edit_is_the_plain_text(real_model_path):
    """`ignis serve --spec ngram` on the default model: a streamed code edit gives the text of
    the same request without speculative decoding (real HTTP over loopback)."""
    import json as _json

    import httpx
    from test_serve import _Server
    srv = _Server(real_model_path, "--spec", "ngram", "-t", "2")
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": REAL_PROMPTS[0]}], "max_tokens": 160,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        texts, usages = [], []
        for extra in ({"speculative": None}, {}):
            with httpx.stream("POST", srv.base + "/v1/chat/completions", json=dict(body, **extra), timeout=300,
                              headers={"Authorization": "Bearer test-key"}) as resp:
                assert resp.status_code == 200
                events = [_json.loads(line[6:]) for line in resp.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
            texts.append("".join(c["delta"].get("content") or "" for e in events for c in e["choices"]))
            usages.append(events[-1]["usage"])
        assert texts[1] == texts[0] and len(texts[0]) > 50
        assert "drafted_tokens" not in usages[0] and usages[1]["accepted_tokens"] > 0
    finally:
        code, err = srv.stop()
    assert code == 0, err[-2000:]


def test_draft_cost_fits_the_verify_steps_time():
    """A verify step's time is fitted as a + b * rows: a compute-bound main model (each row
    costs) makes drafts dearer than a memory-bound one (rows nearly free)."""
    bound = {"memory": (1.0, 0.01), "compute": (1.0, 0.5)}
    costs = {}
    for name, (a, b) in bound.items():
        cost = speculative.DraftCost(prior=0.4)
        for rows in [2, 5, 3, 9, 4, 7] * 4:
            cost.main_round(a + b * rows, rows)
        cost.draft_round(0.2 * 4, 4)
        fa, fb = cost.main_line()
        assert abs(fa - a) < 1e-6 and abs(fb - b) < 1e-6
        for k in (1, 3, 6):        # a single-row step was never seen: the line's
            assert abs(cost.step_cost(k) - (1 + k * (0.2 + b) / (a + b))) < 1e-6
        costs[name] = cost.step_cost
    assert speculative.best_length(0.8, costs["memory"], 10)[0] >= 3
    assert speculative.best_length(0.8, costs["compute"], 10)[0] <= 2


def test_draft_cost_takes_each_row_count_as_timed():
    """Verify steps whose cost jumps at some number of rows (a kernel's tile shape): the
    length is chosen from the times seen for each row count, not from a line through them."""
    times = {1: 1.0, 2: 1.1, 3: 1.15, 4: 1.2, 5: 3.0, 6: 3.1, 7: 3.2}      # a jump at 5 rows
    cost = speculative.DraftCost(prior=0.4)
    for _ in range(3):
        for rows, t in times.items():
            cost.main_round(t, rows)
    cost.draft_round(0.1 * 5, 5)
    for k in range(1, 7):
        assert abs(cost.step_cost(k) - (times[k + 1] + 0.1 * k)) < 1e-9
    k, gain = speculative.best_length(0.9, cost.step_cost, 6)
    assert k == 3 and gain > 1.5, (k, gain)
    a, b = cost.main_line()
    assert speculative.best_length(0.9, lambda k: (a + b * (k + 1) + 0.1 * k) / (a + b), 6)[0] != 3   # a line's


def test_plain_steps_time_the_single_row_step():
    cost = speculative.DraftCost(prior=0.4)
    k = DraftLength(cost=cost)
    assert cost.main_step is None
    k.plain_step(0.05)
    assert cost.main_step == 0.05
    assert DraftLength().plain_step(0.05) is None          # free drafts keep no costs


def test_a_draft_round_is_timed_by_its_decode_steps_not_its_catch_up(with_drafts, monkeypatch):
    """A round whose first step catches up a long context (a prompt, or what was generated
    while the request drafted nothing) is timed by its decode steps: the catch-up is a
    prefill, and counting it per drafted token would price the draft model out."""
    m = with_drafts["other"]
    src = m.draft
    seen = []
    real = speculative.DraftCost.draft_round
    monkeypatch.setattr(speculative.DraftCost, "draft_round",
                        lambda self, seconds, steps: (seen.append((seconds, steps)), real(self, seconds, steps)))
    tokens = list(range(3, 203))                 # a 200-token context to catch up
    drafter = src.drafter(tokens)
    try:
        draft = src.propose_many([(drafter, 3)])[0]
        assert len(draft) == 3 and seen[-1][1] == 2          # the catch-up step left out
        tokens += draft + [draft[-1]]               # all accepted, and one more: 2 new tokens
        src.propose_many([(drafter, 3)])
        assert seen[-1][1] == 3                     # its first step computes 2 tokens: a decode step
        tokens += [7] * 40                          # a context grown by 40 while not drafting
        src.propose_many([(drafter, 4)])
        assert seen[-1][1] == 3
    finally:
        drafter.close()


def test_the_loop_times_a_drafting_requests_plain_steps(with_drafts, monkeypatch):
    """The engine loop reports the decode steps in which a drafting request drafted nothing
    (drafts priced out here: it pauses after its first) as single-row main steps."""
    m = with_drafts["self"]
    rows = []
    real = speculative.DraftCost.main_round
    monkeypatch.setattr(speculative.DraftCost, "main_round",
                        lambda self, seconds, r: (rows.append(r), real(self, seconds, r)))
    monkeypatch.setattr(speculative.DraftCost, "step_cost", lambda self, k: 1 + 10 * k)
    m.generate(PROMPTS[0], max_tokens=12, ignore_eos=True, temperature=0, speculative="draft")
    assert 1 in rows and any(r > 1 for r in rows), rows


def test_a_row_count_not_timed_lately_is_estimated_by_the_line():
    """The machine's load moves: a row count whose own time is old (here the single-row step,
    timed once while every later step verified drafts) gives way to the line of them all."""
    cost = speculative.DraftCost(prior=0.4)
    cost.main_round(5.0, 1)                     # timed once, on a busy machine
    assert cost.main_time(1) == 5.0
    for _ in range(speculative.ROWS_FRESH):
        for rows in (3, 5):
            cost.main_round(1.0 + 0.1 * rows, rows)
    a, b = cost.main_line()
    assert cost.main_time(1) == a + b < 5.0
    assert cost.main_time(5) == 1.5


def _drafting_pair(tiny_model, logits):
    """The tiny main model with another tiny model drafting from ids [0, logits) only."""
    from ignis.runtime.draft_model import DraftModel
    main = ignis.load(tiny_model(n_layers=2, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=7),
                      n_ctx=512, threads=2)
    draft = ignis.load(tiny_model(n_layers=1, width=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=300, seed=11),
                       n_ctx=512, threads=2)
    main.draft = DraftModel(main, draft, logits=logits)
    return main


@pytest.mark.parametrize("logits", [120, None])
def test_a_draft_model_proposes_from_its_first_ids_only(tiny_model, monkeypatch, cheap_drafts, logits):
    """DraftModel(logits=N): the draft model's steps compute the logits of ids [0, N) only
    (a smaller output projection), so it never drafts a later id; the text is the plain one."""
    m = _drafting_pair(tiny_model, logits)
    drafted = []
    real = type(m.draft).propose_many

    def spy(self, wanted):
        out = real(self, wanted)
        drafted.extend(t for d in out for t in d)
        return out
    monkeypatch.setattr(type(m.draft), "propose_many", spy)
    try:
        for prompt in PROMPTS:
            plain = m.generate(prompt, max_tokens=40, ignore_eos=True, seed=3, **SETTINGS)
            assert m.generate(prompt, max_tokens=40, ignore_eos=True, seed=3, speculative="draft", **SETTINGS) == plain
        assert len(drafted) > 50
        if logits is None:
            assert max(drafted) >= 120                       # the tiny draft model does use later ids
        else:
            assert max(drafted) < logits
            assert m.draft.model.engine.batch_plan(1, 1).logits_shape == (1, logits)
    finally:
        m.draft.model.close()
        m.close()


def test_output_rows_is_checked(tiny_model):
    from ignis.models import Qwen2Config
    kw = dict(n_layers=1, width=64, ffn=128, n_heads=4, n_kv_heads=2, vocab=300)
    assert Qwen2Config(**kw, output_rows=100).tensor_shapes()["output.weight"] == (100, 64)
    for bad in (0, 301, 2.5, True):
        with pytest.raises(ignis.ModelError, match="output_rows"):
            Qwen2Config(**kw, output_rows=bad)
    with pytest.raises(ignis.ModelError, match="untied"):
        Qwen2Config(**kw, output_rows=100, tied_output=True)


def test_a_row_count_between_two_timed_ones_is_tried_at_the_smaller_ones_time():
    """Rows 1, 2 and 5 timed (a jump at 4 rows: 2 is cheap, 5 dear); 3 rows has never been
    tried: it is priced as 2 rows (a lower bound), so the policy tries it instead of being
    held at 1 draft by a line through the jump; past the timed counts, the line."""
    cost = speculative.DraftCost(prior=0.4)
    for _ in range(3):
        for rows, t in ((1, 1.0), (2, 1.3), (5, 2.8)):
            cost.main_round(t, rows)
    cost.draft_round(0.3, 1)
    assert cost.main_time(3) == cost.main_time(4) == 1.3
    a, b = cost.main_line()
    assert cost.main_time(8) == max(a + 8 * b, 2.8)
    assert speculative.best_length(0.9, cost.step_cost, 10)[0] == 3
    cost.main_round(1.4, 3)
    cost.main_round(2.7, 4)                 # now known: the jump is at 4
    assert speculative.best_length(0.9, cost.step_cost, 10)[0] == 2
