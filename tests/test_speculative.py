"""Exact speculative decoding: whatever is drafted (right, wrong, partly right), the tokens
are plain decoding's, greedy and sampled, with stop strings, penalties and constraints, alone
and in a batch; the KV rows of rejected drafts are dropped."""
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
    assert speculative.MODES == ("ngram",)


def test_the_server_request_field():
    from ignis.serve import protocol
    body = {"prompt": "x", "max_tokens": 4}
    assert protocol.parse(dict(body), "completion", 8).speculative == "default"      # the server's --spec
    assert protocol.parse(dict(body, speculative="ngram"), "completion", 8).speculative == "ngram"
    assert protocol.parse(dict(body, speculative=None), "completion", 8).speculative is None
    with pytest.raises(protocol.APIError, match="speculative"):
        protocol.parse(dict(body, speculative="draft"), "completion", 8)
