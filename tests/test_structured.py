"""Structured output: JSON Schema, regex and grammar constraints (llguidance) through the
sampler, the single-stream loop, the batch scheduler and the CLI.

The checks of what was generated never use ignis' own code: outputs are parsed with
`json` and validated with `jsonschema`, regexes are matched with `re`, and the mask
kernel is compared with a bit loop written here."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ignis
from ignis._kernels import mask_token_ids, top_k_masked
from ignis.errors import ArgumentError, ConstraintError, IgnisError
from ignis.runtime.constraint import response_format_schema
from ignis.runtime.sampling import Sampler, SamplingParams
from ignis.testing import make_tiny_qwen2

jsonschema = pytest.importorskip("jsonschema")

DATA = os.path.join(os.path.dirname(__file__), "data")
SCHEMAS = json.load(open(os.path.join(DATA, "structured_schemas.json"), encoding="utf-8"))


# --- the mask and the sampler (no model) -----------------------------------------------

def _ids_of_mask(words, n):
    """The oracle: token i is allowed when bit i % 32 of word i // 32 is set."""
    return [i for i in range(n) if (int(words[i // 32]) >> (i % 32)) & 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=20), st.data())
def test_mask_token_ids_matches_a_bit_loop(words, data):
    words = np.array(words, dtype=np.int32)
    n = data.draw(st.integers(0, 32 * len(words)))
    got = mask_token_ids(words, n)
    assert got.dtype == np.int64
    assert got.tolist() == _ids_of_mask(words, n)


def test_mask_token_ids_refuses_a_short_mask():
    with pytest.raises(IgnisError, match="mask"):
        mask_token_ids(np.zeros(2, np.int32), 65)


def _mask_of(ids, n):
    """int32 words with bit i % 32 of word i // 32 set for each id."""
    words = np.zeros((n + 31) // 32, dtype=np.uint32)
    for i in ids:
        words[i // 32] |= np.uint32(1 << (i % 32))
    return words.view(np.int32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]), min_size=1, max_size=150), st.data())
def test_top_k_masked_matches_a_sort_of_the_allowed(values, data):
    """Few distinct values: many ties, which go to the lower id."""
    logits = np.array(values, dtype=np.float32)
    allowed = data.draw(st.sets(st.integers(0, logits.size - 1)))
    k = data.draw(st.integers(1, logits.size))
    want = sorted(allowed, key=lambda i: (-float(logits[i]), i))[:k]
    assert top_k_masked(logits, _mask_of(allowed, logits.size), k).tolist() == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-30, 30, width=32), min_size=2, max_size=64), st.data())
def test_sampler_draws_only_allowed_ids(logits, data):
    logits = np.array(logits, dtype=np.float32)
    allowed = sorted(data.draw(st.sets(st.integers(0, logits.size - 1), min_size=1)))
    temperature = data.draw(st.sampled_from([0.0, 0.8, 1.5]))
    sampler = Sampler(SamplingParams(temperature=temperature, top_k=data.draw(st.integers(0, 8)), seed=1))
    token = sampler(logits, [], _mask_of(allowed, logits.size))
    assert token in allowed
    if temperature == 0.0:
        best = max(allowed, key=lambda i: (logits[i], -i))     # highest logit, lowest id on ties
        assert token == best


def test_masked_sampling_equals_sampling_the_allowed_logits_alone():
    """A constrained draw is the unconstrained draw over the allowed ids' logits (same seed)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=500).astype(np.float32) * 3
    allowed = sorted(rng.choice(500, size=60, replace=False).tolist())
    for top_k in (0, 5, 40):
        params = dict(temperature=0.9, top_k=top_k, top_p=0.9, min_p=0.02)
        masked = Sampler(SamplingParams(seed=4, **params))
        alone = Sampler(SamplingParams(seed=4, **params))
        for _ in range(20):
            assert masked(logits, [], _mask_of(allowed, 500)) == allowed[alone(logits[allowed], [])]


def test_response_format_mapping():
    assert response_format_schema(None) is None
    assert response_format_schema({"type": "text"}) is None
    assert response_format_schema({"type": "json_object"}) == {"type": "object"}
    schema = {"type": "integer"}
    assert response_format_schema({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}) == schema
    for bad in ({"type": "xml"}, {"type": "json_schema"}, "json", {"type": "json_schema", "json_schema": {}}):
        with pytest.raises(ArgumentError):
            response_format_schema(bad)


# --- a tiny model (random weights: without the constraint its output is noise) ---------

@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(make_tiny_qwen2(tmp_path_factory.mktemp("structured") / "tiny.gguf", n_ctx=512, seed=5))


@pytest.fixture(scope="module")
def tiny(tiny_path):
    model = ignis.load(tiny_path, n_ctx=512, threads=2)
    yield model
    model.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_regex_matches_in_full(tiny, seed):
    pattern = r"[a-c]{2,5}-[0-9]{3}"
    text = tiny.generate("x", regex=pattern, temperature=0.8, seed=seed, max_tokens=64, ignore_eos=True)
    assert re.fullmatch(pattern, text), text
    result = tiny.last_result
    assert result.finish_reason == "stop"                 # complete: stopped whatever ignore_eos said
    # and at once: no forward pass after the last token (the first came from the prompt's logits)
    assert result.decode_tokens == len(result.tokens) - 1


def test_without_the_constraint_the_tiny_model_does_not_match(tiny):
    text = tiny.generate("x", temperature=0.8, seed=1, max_tokens=12, ignore_eos=True)
    assert not re.fullmatch(r"[a-c]{2,5}-[0-9]{3}", text)


LARK = r'''
start: greeting " " name "!"
greeting: "hi" | "hello"
name: /[A-Z][a-z]{1,5}/
'''


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lark_grammar_is_honoured(tiny, seed):
    text = tiny.generate("x", grammar=LARK, temperature=0.8, seed=seed, max_tokens=64)
    assert re.fullmatch(r"(hi|hello) [A-Z][a-z]{1,5}!", text), text


def test_gbnf_grammar_is_honoured(tiny):
    gbnf = 'root ::= answer "."\nanswer ::= "yes" | "no" | "maybe"\n'
    for seed in (1, 2, 3):
        text = tiny.generate("x", grammar=gbnf, temperature=1.0, seed=seed, max_tokens=32)
        assert text in ("yes.", "no.", "maybe."), text


FINITE_SCHEMA = {"type": "object", "properties": {
    "color": {"enum": ["red", "green", "blue"]},
    "n": {"type": "integer", "minimum": 1, "maximum": 9},
    "ok": {"type": "boolean"}}, "required": ["color", "n", "ok"], "additionalProperties": False}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_on_a_random_model_validates(tiny, seed):
    text = tiny.generate("x", json_schema=FINITE_SCHEMA, temperature=0.8, seed=seed, max_tokens=200)
    jsonschema.validate(json.loads(text), FINITE_SCHEMA)


def test_json_schema_as_text_equals_as_dict(tiny):
    a = tiny.generate("x", json_schema=FINITE_SCHEMA, temperature=0.8, seed=7, max_tokens=200)
    b = tiny.generate("x", json_schema=json.dumps(FINITE_SCHEMA), temperature=0.8, seed=7, max_tokens=200)
    assert a == b


def test_chat_response_format(tiny):
    messages = [{"role": "user", "content": "hi"}]
    text = tiny.chat(messages, response_format={"type": "json_schema", "json_schema": {"schema": FINITE_SCHEMA}},
                     temperature=0.8, seed=3, max_tokens=200)
    jsonschema.validate(json.loads(text), FINITE_SCHEMA)
    obj = tiny.chat(messages, response_format={"type": "json_object"}, temperature=0.8, seed=3, max_tokens=300)
    if tiny.last_result.finish_reason == "stop":
        assert isinstance(json.loads(obj), dict)
    else:                     # a random model may write a long object: what there is is an object's start
        assert obj.lstrip().startswith("{")
    with pytest.raises(ArgumentError, match="either response_format"):
        tiny.chat(messages, response_format={"type": "json_object"}, regex="a")


BAD_CONSTRAINTS = [
    (dict(regex="(("), ConstraintError, "regex"),
    (dict(regex=""), ConstraintError, "regex is empty"),
    (dict(grammar="start: undefined_rule"), ConstraintError, "grammar"),
    (dict(json_schema='{"type": "object"'), ConstraintError, "not valid JSON"),
    (dict(json_schema={"type": "no-such-type"}), ConstraintError, "json_schema"),
    (dict(json_schema="[1, 2]"), ConstraintError, "JSON object"),
    (dict(json_schema=42), ArgumentError, "dict or a JSON string"),
    (dict(regex=b"abc"), ArgumentError, "must be a str"),
    (dict(regex="a", grammar="start: \"a\""), ArgumentError, "at most one"),
]


@pytest.mark.parametrize("kwargs,error,words", BAD_CONSTRAINTS)
def test_invalid_constraints_are_one_line_errors_before_any_token(tiny, kwargs, error, words):
    tiny.reset()
    with pytest.raises(error) as info:
        tiny.generate("hello", stream=True, **kwargs)        # raised at the call, not while streaming
    message = str(info.value)
    assert words in message and "\n" not in message, message
    assert tiny.n_past == 0                                  # nothing was evaluated


def test_stream_and_stop_strings_with_a_constraint(tiny):
    pattern = r"[a-c]{3},[0-9]{2}"
    whole = tiny.generate("x", regex=pattern, temperature=0.8, seed=11, max_tokens=32)
    assert re.fullmatch(pattern, whole)
    pieces = list(tiny.generate("x", regex=pattern, temperature=0.8, seed=11, max_tokens=32, stream=True))
    assert "".join(pieces) == whole
    cut = tiny.generate("x", regex=pattern, temperature=0.8, seed=11, max_tokens=32, stop=",")
    assert cut == whole.split(",")[0]
    assert tiny.last_result.finish_reason == "stop"


def test_constrained_batch_equals_each_request_alone(tiny):
    prompts = ["x", "hello there", "x", "a longer prompt than the others"]
    constraints = dict(regex=[r"[a-c]{2,5}-[0-9]{3}", None, None, r"(yes|no)!"],
                       grammar=[None, LARK, None, None],
                       json_schema=[None, None, FINITE_SCHEMA, None])
    seeds = [1, 2, 3, 4]
    batch = tiny.generate_batch(prompts, temperature=0.8, seed=seeds, max_tokens=200, **constraints)
    for i, prompt in enumerate(prompts):
        alone = tiny.generate(prompt, temperature=0.8, seed=seeds[i], max_tokens=200,
                              **{k: v[i] for k, v in constraints.items()})
        assert batch[i] == alone, i
    assert re.fullmatch(r"[a-c]{2,5}-[0-9]{3}", batch[0])
    jsonschema.validate(json.loads(batch[2]), FINITE_SCHEMA)


def test_batch_constraint_errors_name_the_prompt(tiny):
    with pytest.raises(ConstraintError, match=r"prompts\[1\]: regex"):
        tiny.generate_batch(["a", "b"], regex=[r"a+", r"(("])
    with pytest.raises(ArgumentError, match="2 regexes for 3 prompts"):
        tiny.generate_batch(["a", "b", "c"], regex=["a", "b"])


def test_scheduler_n_completions_each_keep_their_own_state(tiny):
    constraint = tiny.constraint(regex=r"[0-9]{4}")
    sched = tiny.scheduler()
    handles = sched.submit(tiny.request(tiny.tokenize("x"), max_tokens=16, temperature=1.0, seed=5, n=3,
                                        constraint=constraint))
    texts = [h.text(timeout=60) for h in handles]
    assert all(re.fullmatch(r"[0-9]{4}", t) for t in texts), texts
    assert len(set(texts)) > 1          # different seeds, different digits


# --- the CLI ------------------------------------------------------------------------------

def _ignis(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ignis", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_regex_schema_and_grammar_flags(tiny_path, tmp_path):
    r = _ignis("run", "-m", tiny_path, "-p", "x", "--regex", r"[xyz]{4}", "-n", "20", "-s", "3")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"[xyz]{4}", r.stdout.strip()), r.stdout
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(FINITE_SCHEMA))
    for flags in (["--json-schema", str(schema_file)], ["-j", json.dumps(FINITE_SCHEMA)],
                  ["--json-schema-file", str(schema_file)]):
        r = _ignis("run", "-m", tiny_path, "-p", "x", *flags, "-n", "200", "-s", "4")
        assert r.returncode == 0, r.stderr
        jsonschema.validate(json.loads(r.stdout), FINITE_SCHEMA)
    grammar_file = tmp_path / "g.lark"
    grammar_file.write_text(LARK)
    for flags in (["--grammar", str(grammar_file)], ["--grammar-file", str(grammar_file)], ["--grammar", LARK]):
        r = _ignis("run", "-m", tiny_path, "-p", "x", *flags, "-n", "40", "-s", "5")
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(r"(hi|hello) [A-Z][a-z]{1,5}!", r.stdout.strip()), r.stdout


def test_cli_bad_constraint_is_one_line(tiny_path):
    r = _ignis("run", "-m", tiny_path, "-p", "x", "--regex", "((")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "regex" in lines[0] and "Traceback" not in r.stderr, r.stderr
    r = _ignis("run", "-m", tiny_path, "-p", "x", "--regex", "a", "--grammar", "b")
    assert r.returncode == 2 and "not allowed with" in r.stderr


# --- the real model ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(real_model_path):
    model = ignis.load(real_model_path, n_ctx=2048)
    yield model
    model.close()


def _chat_prompt(model, case):
    return model.render_chat([{"role": "user", "content": case["prompt"] + " Answer in JSON."}])


@pytest.mark.real
@pytest.mark.slow
def test_schema_corpus_validates_at_temperature_08(real):
    """Every schema of the corpus (32), two seeds each, sampled at 0.8 in one batch: every
    output parses and validates."""
    assert len(SCHEMAS) >= 30
    prompts = [_chat_prompt(real, c) for c in SCHEMAS]
    failures = []
    for seed in (1, 2):
        outs = real.generate_batch(prompts, max_tokens=256, temperature=0.8, seed=seed,
                                   json_schema=[c["schema"] for c in SCHEMAS])
        for case, text in zip(SCHEMAS, outs):
            try:
                jsonschema.validate(json.loads(text), case["schema"])
            except (ValueError, jsonschema.ValidationError) as exc:
                failures.append(f"{case['name']} seed {seed}: {text[:200]!r}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chat_json_schema_validates(real, seed):
    for case in SCHEMAS[seed::8]:        # four schemas a seed, through Model.chat
        text = real.chat([{"role": "user", "content": case["prompt"]}], json_schema=case["schema"],
                         temperature=0.8, seed=seed)
        jsonschema.validate(json.loads(text), case["schema"])


@pytest.mark.real
def test_date_regex_on_the_real_model(real):
    pattern = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    for seed in (1, 2):
        text = real.generate("The first moon landing happened on ", regex=pattern, temperature=0.8, seed=seed)
        assert re.fullmatch(pattern, text), text


@pytest.mark.real
def test_real_model_constrained_batch_equals_alone(real):
    cases = SCHEMAS[:3]
    prompts = [_chat_prompt(real, c) for c in cases]
    batch = real.generate_batch(prompts, max_tokens=160, temperature=0.8, seed=9,
                                json_schema=[c["schema"] for c in cases])
    for prompt, case, text in zip(prompts, cases, batch):
        assert real.generate(prompt, max_tokens=160, temperature=0.8, seed=9, json_schema=case["schema"]) == text


@pytest.mark.real
@pytest.mark.parametrize("fixture", ["smollm2_path", "gemma3_path"])
def test_constraints_on_the_other_vocabularies(request, fixture):
    """The vocabulary bridge works for SmolLM2's byte-level BPE (21 bytes without a token)
    and Gemma 3's SentencePiece vocabulary (byte-fallback pieces, 262,144 tokens)."""
    model = ignis.load(request.getfixturevalue(fixture), n_ctx=1024)
    try:
        pattern = r"(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}"
        assert re.fullmatch(pattern, model.generate("The first moon landing was on", regex=pattern,
                                                    temperature=0.8, seed=1))
        for seed in (1, 2):
            text = model.generate("A city as JSON:", json_schema=FINITE_SCHEMA, temperature=0.8, seed=seed)
            jsonschema.validate(json.loads(text), FINITE_SCHEMA)
    finally:
        model.close()
