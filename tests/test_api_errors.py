"""Every public entry point answers a wrong type or an out-of-range value with an IgnisError
subclass whose message is one line, before any work: a table of concrete bad calls, then
Hypothesis properties that throw values of every kind at every public parameter and hold
the outcome against a validity predicate written here (independently of ignis.args)."""
import math
import os
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import ignis
from ignis import ArgumentError, ArgumentTypeError, IgnisError, SamplingParams, TokenIdError, Tokenizer

VOCAB = 300
N_CTX = 64
PASS_NAMES = ("fuse_rmsnorm", "fuse_swiglu", "fuse_matmul_bias", "fuse_qkv", "fuse_residual",
              "fuse_gate_up", "dce")
LONG = list(range(100, 100 + N_CTX - 2))   # a prompt that leaves room for at most 3 more tokens
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def path(tiny_model):
    return tiny_model(vocab=VOCAB, n_ctx=N_CTX, seed=7)


@pytest.fixture(scope="module")
def m(path):
    model = ignis.load(path, n_ctx=N_CTX, threads=1)
    yield model
    model.close()


def _one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and len(text.splitlines()) == 1 and "\n" not in text, repr(text)


def _raises_ignis(call):
    with pytest.raises(IgnisError) as info:
        result = call()
        if hasattr(result, "__next__"):      # a stream that did not raise at call time fails here
            list(result)
            pytest.fail("the stream did not raise at call time")
    _one_line(info.value)
    return info.value


# -- the table ------------------------------------------------------------------------------------

BAD_CALLS = {
    # the calls the issue names
    "generate(123)": lambda m, p: m.generate(123),
    "tokenize(123)": lambda m, p: m.tokenize(123),
    "top_k='3'": lambda m, p: m.generate("a", top_k="3"),
    "stop=5": lambda m, p: m.generate("a", stop=5),
    "seed='x'": lambda m, p: m.generate("a", seed="x"),
    "logits(['a'])": lambda m, p: m.logits(["a"]),
    "logits([1.5])": lambda m, p: m.logits([1.5]),
    "eval([2.0])": lambda m, p: m.eval([2.0]),
    # prompts and token ids
    "generate(None)": lambda m, p: m.generate(None),
    "generate(bytes)": lambda m, p: m.generate(b"ab"),
    "generate([1.0])": lambda m, p: m.generate([1.0]),
    "generate([True])": lambda m, p: m.generate([True]),
    "generate([-1])": lambda m, p: m.generate([-1]),
    "generate([2**70])": lambda m, p: m.generate([2**70]),
    "generate([10**5000])": lambda m, p: m.generate([10**5000]),
    "generate([[1]])": lambda m, p: m.generate([[1]]),
    "generate({1, 2})": lambda m, p: m.generate({1, 2}),
    "generate(float array)": lambda m, p: m.generate(np.array([1.0, 2.0])),
    "generate(2-D array)": lambda m, p: m.generate(np.array([[1, 2]])),
    "generate(bool array)": lambda m, p: m.generate(np.array([True])),
    "generate([np.float32])": lambda m, p: m.generate([np.float32(3)]),
    "generate(surrogate)": lambda m, p: m.generate("\ud800"),
    "generate('') stream": lambda m, p: m.generate("", stream=True),
    "eval(np.float64 array)": lambda m, p: m.eval(np.array([2.0])),
    "eval('ab')": lambda m, p: m.eval("ab"),
    "eval_prompt([300])": lambda m, p: m.eval_prompt([VOCAB]),
    "eval_prompt(5)": lambda m, p: m.eval_prompt(5),
    "logits(None)": lambda m, p: m.logits(None),
    "logits([[1, 2]])": lambda m, p: m.logits([[1, 2]]),
    "detokenize([300])": lambda m, p: m.detokenize([VOCAB]),
    "detokenize([-1])": lambda m, p: m.detokenize([-1]),
    "detokenize('ab')": lambda m, p: m.detokenize("ab"),
    "detokenize([1.0])": lambda m, p: m.detokenize([1.0]),
    "tokenize(bytes)": lambda m, p: m.tokenize(b"ab"),
    "tokenize(None)": lambda m, p: m.tokenize(None),
    "tokenize(surrogate)": lambda m, p: m.tokenize("a\ud800"),
    "tokenize(parse_special=1)": lambda m, p: m.tokenize("a", parse_special=1),
    "tokenize(parse_special='no')": lambda m, p: m.tokenize("a", parse_special="no"),
    # counts
    "max_tokens=True": lambda m, p: m.generate("a", max_tokens=True),
    "max_tokens=1.0": lambda m, p: m.generate("a", max_tokens=1.0),
    "max_tokens=-1": lambda m, p: m.generate("a", max_tokens=-1),
    "max_tokens=2**70": lambda m, p: m.generate("a", max_tokens=2**70),
    "max_tokens='2'": lambda m, p: m.generate("a", max_tokens="2"),
    "top_k=-1": lambda m, p: m.generate("a", top_k=-1),
    "top_k=2.0": lambda m, p: m.generate("a", top_k=2.0),
    "top_k=True": lambda m, p: m.generate("a", top_k=True),
    # floats
    "temperature='0.5'": lambda m, p: m.generate("a", temperature="0.5"),
    "temperature=nan": lambda m, p: m.generate("a", temperature=float("nan")),
    "temperature=-inf": lambda m, p: m.generate("a", temperature=-math.inf),
    "temperature=None": lambda m, p: m.generate("a", temperature=None),
    "temperature=True": lambda m, p: m.generate("a", temperature=True),
    "temperature=10**400": lambda m, p: m.generate("a", temperature=10**400),
    "temperature=1j": lambda m, p: m.generate("a", temperature=1j),
    "top_p=inf": lambda m, p: m.generate("a", top_p=math.inf),
    "top_p=0": lambda m, p: m.generate("a", top_p=0),
    "top_p=np.nan": lambda m, p: m.generate("a", top_p=np.float32("nan")),
    "min_p=-0.1": lambda m, p: m.generate("a", min_p=-0.1),
    "min_p='0'": lambda m, p: m.generate("a", min_p="0"),
    "repeat_penalty=0": lambda m, p: m.generate("a", repeat_penalty=0),
    "repeat_penalty=nan": lambda m, p: m.generate("a", repeat_penalty=math.nan),
    "presence_penalty=inf": lambda m, p: m.generate("a", presence_penalty=math.inf),
    "frequency_penalty='1'": lambda m, p: m.generate("a", frequency_penalty="1"),
    "frequency_penalty=[0.1]": lambda m, p: m.generate("a", frequency_penalty=[0.1]),
    # seed, stop, flags
    "seed=1.0": lambda m, p: m.generate("a", seed=1.0),
    "seed=True": lambda m, p: m.generate("a", seed=True),
    "seed=-1": lambda m, p: m.generate("a", seed=-1),
    "seed=2**64": lambda m, p: m.generate("a", seed=2**64),
    "seed=[1]": lambda m, p: m.generate("a", seed=[1]),
    "stop=[5]": lambda m, p: m.generate("a", stop=[5]),
    "stop=['x', None]": lambda m, p: m.generate("a", stop=["x", None]),
    "stop=b'x'": lambda m, p: m.generate("a", stop=b"x"),
    "stop={'x'}": lambda m, p: m.generate("a", stop={"x"}),
    "stream=1": lambda m, p: m.generate("a", stream=1),
    "stream='yes'": lambda m, p: m.generate("a", stream="yes"),
    "ignore_eos=None": lambda m, p: m.generate("a", ignore_eos=None),
    "ignore_eos=0": lambda m, p: m.generate("a", ignore_eos=0),
    "stream=True, top_k='3'": lambda m, p: m.generate("a", stream=True, top_k="3"),
    # chat
    "chat('hi')": lambda m, p: m.chat("hi"),
    "chat(None)": lambda m, p: m.chat(None),
    "chat(['hi'])": lambda m, p: m.chat(["hi"]),
    "chat(no role)": lambda m, p: m.chat([{"content": "x"}]),
    "chat(role=1)": lambda m, p: m.chat([{"role": 1, "content": "x"}]),
    "chat(content=None)": lambda m, p: m.chat([{"role": "user", "content": None}]),
    "chat(content=bytes)": lambda m, p: m.chat([{"role": "user", "content": b"x"}]),
    "chat(content surrogate)": lambda m, p: m.chat([{"role": "user", "content": "\udc80"}]),
    "chat(max_tokens=-1)": lambda m, p: m.chat(MSG, max_tokens=-1),
    "chat(stream=1)": lambda m, p: m.chat(MSG, stream=1),
    "chat(unknown keyword)": lambda m, p: m.chat(MSG, foo=1),
    "chat(prompt=)": lambda m, p: m.chat(MSG, prompt="x"),
    "chat(top_k='3')": lambda m, p: m.chat(MSG, top_k="3"),
    "render_chat(dict)": lambda m, p: m.render_chat({"role": "user", "content": "x"}),
    "render_chat(add_generation_prompt=1)": lambda m, p: m.render_chat(MSG, add_generation_prompt=1),
    # greedy_ids
    "greedy_ids(n=1.0)": lambda m, p: m.greedy_ids("a", 1.0),
    "greedy_ids(n=-1)": lambda m, p: m.greedy_ids("a", -1),
    "greedy_ids(n=None)": lambda m, p: m.greedy_ids("a", None),
    "greedy_ids(n=True)": lambda m, p: m.greedy_ids("a", True),
    "greedy_ids(stop_ids=5)": lambda m, p: m.greedy_ids("a", 1, stop_ids=5),
    "greedy_ids(stop_ids=['x'])": lambda m, p: m.greedy_ids("a", 1, stop_ids=["x"]),
    "greedy_ids(stop_ids=[1.5])": lambda m, p: m.greedy_ids("a", 1, stop_ids=[1.5]),
    "greedy_ids(stop_ids={-1})": lambda m, p: m.greedy_ids("a", 1, stop_ids={-1}),
    "greedy_ids(prompt=[2.0])": lambda m, p: m.greedy_ids([2.0], 1),
    # load
    "load(123)": lambda m, p: ignis.load(123),
    "load(bytes)": lambda m, p: ignis.load(p.encode()),
    "load('')": lambda m, p: ignis.load(""),
    "load(NUL)": lambda m, p: ignis.load(p + "\0"),
    "load(surrogate)": lambda m, p: ignis.load("/tmp/\ud800.gguf"),
    "load(line break)": lambda m, p: ignis.load(p + "\nx"),
    "load(missing)": lambda m, p: ignis.load(p + ".missing"),
    "load(directory)": lambda m, p: ignis.load(os.path.dirname(p)),
    "load(n_ctx=64.0)": lambda m, p: ignis.load(p, n_ctx=64.0),
    "load(n_ctx='64')": lambda m, p: ignis.load(p, n_ctx="64"),
    "load(n_ctx=True)": lambda m, p: ignis.load(p, n_ctx=True),
    "load(n_ctx=0)": lambda m, p: ignis.load(p, n_ctx=0),
    "load(n_ctx=2**70)": lambda m, p: ignis.load(p, n_ctx=2**70),
    "load(threads=0)": lambda m, p: ignis.load(p, threads=0),
    "load(threads=1.0)": lambda m, p: ignis.load(p, threads=1.0),
    "load(threads='2')": lambda m, p: ignis.load(p, threads="2"),
    "load(threads=10**6)": lambda m, p: ignis.load(p, threads=10**6),
    "load(passes='nope')": lambda m, p: ignis.load(p, passes="nope"),
    "load(passes=5)": lambda m, p: ignis.load(p, passes=5),
    "load(passes=[1])": lambda m, p: ignis.load(p, passes=[1]),
    "load(passes=['dce', 'x'])": lambda m, p: ignis.load(p, passes=["dce", "x"]),
    "load(passes={'dce'})": lambda m, p: ignis.load(p, passes={"dce"}),
    # the tokenizer
    "encode(bytes)": lambda m, p: m.tokenizer.encode(b"ab"),
    "encode(5)": lambda m, p: m.tokenizer.encode(5),
    "encode(surrogate)": lambda m, p: m.tokenizer.encode("\ud800"),
    "encode(parse_special=None)": lambda m, p: m.tokenizer.encode("a", parse_special=None),
    "decode(5)": lambda m, p: m.tokenizer.decode(5),
    "decode('ab')": lambda m, p: m.tokenizer.decode("ab"),
    "decode(b'ab')": lambda m, p: m.tokenizer.decode(b"ab"),
    "decode([1.0])": lambda m, p: m.tokenizer.decode([1.0]),
    "decode([300])": lambda m, p: m.tokenizer.decode([VOCAB]),
    "decode(float array)": lambda m, p: m.tokenizer.decode(np.array([1.0])),
    "token_to_piece(True)": lambda m, p: m.tokenizer.token_to_piece(True),
    "token_to_piece(1.0)": lambda m, p: m.tokenizer.token_to_piece(1.0),
    "token_to_piece(-1)": lambda m, p: m.tokenizer.token_to_piece(-1),
    "token_to_piece(np.float32)": lambda m, p: m.tokenizer.token_to_piece(np.float32(1)),
    "stream().push('a')": lambda m, p: m.tokenizer.stream().push("a"),
    "stream().push(300)": lambda m, p: m.tokenizer.stream().push(VOCAB),
    "from_gguf(3)": lambda m, p: Tokenizer.from_gguf(3),
    "from_gguf(None)": lambda m, p: Tokenizer.from_gguf(None),
    "from_gguf(bytes)": lambda m, p: Tokenizer.from_gguf(p.encode()),
    "from_gguf(missing)": lambda m, p: Tokenizer.from_gguf(p + ".missing"),
    "from_gguf(NUL)": lambda m, p: Tokenizer.from_gguf("a\0b"),
    "from_metadata([])": lambda m, p: Tokenizer.from_metadata([]),
    "from_metadata(None)": lambda m, p: Tokenizer.from_metadata(None),
    "from_metadata({})": lambda m, p: Tokenizer.from_metadata({}),
    # SamplingParams on its own
    "SamplingParams(repeat_last_n=-1)": lambda m, p: SamplingParams(repeat_last_n=-1).validate(),
    "SamplingParams(repeat_last_n=1.5)": lambda m, p: SamplingParams(repeat_last_n=1.5).validate(),
    "SamplingParams(top_k=None)": lambda m, p: SamplingParams(top_k=None).validate(),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_call_is_a_one_line_ignis_error(m, path, name):
    _raises_ignis(lambda: BAD_CALLS[name](m, path))


def test_error_classes():
    assert issubclass(ArgumentError, IgnisError) and issubclass(ArgumentError, ValueError)
    assert issubclass(ArgumentTypeError, ArgumentError) and issubclass(ArgumentTypeError, TypeError)
    assert issubclass(TokenIdError, ignis.TokenizerError) and issubclass(TokenIdError, ArgumentError)
    for name in ("ArgumentError", "ArgumentTypeError", "TokenIdError"):
        assert name in ignis.__all__


def test_messages_name_the_parameter_and_the_value(m):
    message = str(_raises_ignis(lambda: m.generate("a", top_k="3")))
    assert "top_k" in message and "str '3'" in message and "integer" in message
    message = str(_raises_ignis(lambda: m.logits([4, 5, 1.5])))
    assert "ids[2]" in message and "1.5" in message and "float" in message
    message = str(_raises_ignis(lambda: m.generate("a", seed="x" * 1000)))
    assert "seed" in message and len(message) < 200            # the value is cut short
    assert isinstance(_raises_ignis(lambda: m.generate(123)), TypeError)
    assert isinstance(_raises_ignis(lambda: m.generate("a", top_p=2.0)), ValueError)


def test_valid_unusual_arguments_are_accepted(m, path):
    np_ids = np.array([104, 105], dtype=np.int64)
    ref = m.generate([104, 105], max_tokens=2, temperature=0)
    assert m.generate(np_ids, max_tokens=2, temperature=0) == ref
    assert m.generate(np_ids.astype(np.uint16), max_tokens=np.int32(2), temperature=0) == ref
    assert m.generate((np.int64(104), 105), max_tokens=2, temperature=0) == ref
    assert m.generate(range(104, 106), max_tokens=2, temperature=0) == ref
    assert m.generate([104, 105], max_tokens=2, temperature=np.float32(0.7), top_k=np.int64(5),
                      seed=np.uint64(2**64 - 1), stop=("zz",), ignore_eos=np.bool_(True)) is not None
    assert m.generate("a", max_tokens=1, seed=2**64 - 1, temperature=1) is not None
    assert m.generate("a", max_tokens=1, temperature=5e-324) is not None      # tiny but valid
    assert m.generate("abab", max_tokens=2, temperature=1.0, repeat_penalty=5e-324,
                      frequency_penalty=-1e308, presence_penalty=1e308) is not None
    assert m.detokenize(np.array([104, 105])) == "hi" == m.tokenizer.decode(iter([104, 105]))
    assert m.tokenizer.token_to_piece(np.int64(104)) == b"h"
    assert m.greedy_ids([104], 2, stop_ids={1, 2}) == m.greedy_ids([104], 2, stop_ids=np.array([1, 2]))
    with ignis.load(pathlib.Path(path), n_ctx=np.int64(16), threads=np.int8(1), passes="dce") as other:
        assert other.n_ctx == 16 and type(other.n_ctx) is int
    assert Tokenizer.from_gguf(pathlib.Path(path)).encode("hi") == [104, 105]


def test_validation_happens_before_any_work(m, monkeypatch):
    """A bad argument neither runs a kernel nor waits for the model lock."""
    calls = []
    real = m.engine.step
    monkeypatch.setattr(m.engine, "step", lambda *a, **k: calls.append(a) or real(*a, **k))
    held, release = threading.Event(), threading.Event()

    def hold():
        with m._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        bad = [lambda: m.generate("a", top_k="3"), lambda: m.generate("a", stream=True, seed=-1),
               lambda: m.generate([1, 2.5]), lambda: m.logits([1.5]), lambda: m.eval([2.0]),
               lambda: m.eval_prompt([VOCAB]), lambda: m.greedy_ids("a", 1, stop_ids=["x"]),
               lambda: m.chat(MSG, temperature="hot")]
        for call in bad:
            done = []
            worker = threading.Thread(target=lambda: done.append(_catch(call)))
            worker.start()
            worker.join(10)
            assert done and isinstance(done[0], IgnisError), done
    finally:
        release.set()
        holder.join()
    assert calls == []


def _catch(call):
    try:
        call()
    except Exception as exc:     # noqa: BLE001 - the test looks at what it was
        return exc
    return None


# -- the properties -------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "a\udc80", "\udfffb", "<|im_end|>\ud800"])
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-5, VOCAB + 5), st.integers(-2**70, 2**70), st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 5e-324, 1e308, math.nan, math.inf, -math.inf]),
    st.text(max_size=4), st.binary(max_size=4), SURROGATES,
    st.integers(-5, VOCAB + 5).map(np.int64), st.integers(0, 2**64 - 1).map(np.uint64),
    st.floats(width=32).map(np.float32), st.booleans().map(np.bool_),
    st.complex_numbers(max_magnitude=2), st.just(object()), st.just(pathlib.Path("nope.gguf")),
)
ARRAYS = st.one_of(
    st.lists(st.integers(-5, VOCAB + 5), max_size=4).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, VOCAB + 5), max_size=4).map(lambda v: np.array(v, dtype=np.uint16)),
    st.lists(st.floats(-5, VOCAB), max_size=3).map(np.array),
    st.lists(st.booleans(), max_size=3).map(np.array),
    st.just(np.zeros((1, 2), dtype=np.int64)), st.just(np.array(3)),
)
ID_LISTS = st.lists(st.one_of(st.integers(0, VOCAB - 1), st.integers(0, VOCAB - 1).map(np.int32)),
                    min_size=1, max_size=4)
VALUES = st.one_of(
    SCALARS, ARRAYS, ID_LISTS, ID_LISTS.map(tuple),
    st.lists(SCALARS, max_size=3), st.lists(SCALARS, max_size=3).map(tuple),
    st.lists(st.lists(st.integers(0, 5), max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=2),
    st.frozensets(st.integers(-2, VOCAB + 2), max_size=3), st.sets(st.integers(0, 5), max_size=2),
)

few = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))


# independent validity predicates

def _is_int(v):
    return type(v) is int or isinstance(v, np.integer)


def _is_real(v):
    return type(v) in (int, float) or isinstance(v, (np.integer, np.floating))


def _finite(v):
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _count(v):
    return _is_int(v) and 0 <= v < 2**63


def _flag(v):
    return type(v) is bool or isinstance(v, np.bool_)


def _has_surrogate(text):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _ids(v, min_len=0, max_len=None):
    if isinstance(v, np.ndarray):
        if v.ndim != 1 or v.dtype.kind not in "iu":
            return False
        items = v.tolist()
    elif isinstance(v, (list, tuple, range)):
        items = list(v)
    else:
        return False
    return (min_len <= len(items) <= (max_len or len(items))
            and all(_is_int(i) and 0 <= i < VOCAB for i in items))


def _text(v):
    return isinstance(v, str) and not _has_surrogate(v)


def _prompt(v):
    return (_text(v) and v != "") or _ids(v, 1, N_CTX)


VALID = {
    "max_tokens": _count, "top_k": _count, "n": _count,
    "temperature": lambda v: _is_real(v) and _finite(v) and v >= 0,
    "top_p": lambda v: _is_real(v) and _finite(v) and 0 < v <= 1,
    "min_p": lambda v: _is_real(v) and _finite(v) and 0 <= v <= 1,
    "repeat_penalty": lambda v: _is_real(v) and _finite(v) and v > 0,
    "presence_penalty": lambda v: _is_real(v) and _finite(v),
    "frequency_penalty": lambda v: _is_real(v) and _finite(v),
    "repeat_last_n": _count,
    "seed": lambda v: v is None or (_is_int(v) and 0 <= v < 2**64),
    "stop": lambda v: v is None or isinstance(v, str) or (
        isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v)),
    "ignore_eos": _flag, "stream": _flag, "parse_special": _flag, "add_generation_prompt": _flag,
    "prompt": _prompt,
}


def _check(valid: bool, call):
    """valid: the call returns (a stream is drained); invalid: a one-line IgnisError."""
    event("valid" if valid else "invalid")
    if valid:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
        return result
    try:
        result = call()
    except IgnisError as exc:
        _one_line(exc)
        return None
    pytest.fail(f"no IgnisError; returned {result!r:.80}")


GENERATE_PARAMS = ["max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                   "presence_penalty", "frequency_penalty", "seed", "stop", "ignore_eos", "stream"]


@few
@given(param=st.sampled_from(GENERATE_PARAMS), value=VALUES)
def test_generate_every_parameter(m, param, value):
    prompt, max_tokens = "a", 1
    if param == "max_tokens":        # a huge valid count still ends at the end of the context
        prompt, max_tokens = LONG, value
    kwargs = {"max_tokens": max_tokens, param: value}
    _check(VALID[param](value), lambda: m.generate(prompt, **kwargs))


@few
@given(prompt=VALUES | st.text(max_size=4) | SURROGATES, stream=st.booleans())
def test_generate_prompt(m, prompt, stream):
    _check(_prompt(prompt), lambda: m.generate(prompt, max_tokens=1, temperature=0, stream=stream))


@few
@given(param=st.sampled_from(["temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
                              "presence_penalty", "frequency_penalty", "seed"]), value=VALUES)
def test_sampling_params_every_field(param, value):
    _check(VALID[param](value), lambda: SamplingParams(**{param: value}).validate())


@few
@given(which=st.sampled_from(["logits", "eval", "eval_prompt", "detokenize", "greedy_ids", "decode"]),
       ids=VALUES | ID_LISTS.map(lambda v: np.array(v, dtype=np.int32)))
def test_token_id_arguments(m, which, ids):
    m.reset()
    if which in ("logits", "greedy_ids"):              # these take text too
        valid = _prompt(ids)
    elif which in ("eval", "eval_prompt"):
        valid = _ids(ids, 1, N_CTX)
    else:
        valid = _ids(ids)
    call = {"logits": lambda: m.logits(ids), "eval": lambda: m.eval(ids),
            "eval_prompt": lambda: m.eval_prompt(ids), "detokenize": lambda: m.detokenize(ids),
            "greedy_ids": lambda: m.greedy_ids(ids, 1), "decode": lambda: m.tokenizer.decode(ids)}[which]
    _check(valid, call)


@few
@given(n=VALUES, stop_ids=st.none() | VALUES)
def test_greedy_ids_n_and_stop_ids(m, n, stop_ids):
    stop_ok = stop_ids is None or (
        _ids(list(stop_ids) if isinstance(stop_ids, (set, frozenset)) else stop_ids))
    _check(_count(n) and stop_ok, lambda: m.greedy_ids(LONG, n, stop_ids=stop_ids))


@few
@given(text=VALUES | st.text(max_size=6) | SURROGATES, parse_special=st.booleans() | VALUES,
       via_model=st.booleans())
def test_tokenize(m, text, parse_special, via_model):
    encode = m.tokenize if via_model else m.tokenizer.encode
    _check(_text(text), lambda: encode(text))
    _check(_flag(parse_special), lambda: encode("a<|im_end|>", parse_special=parse_special))


@few
@given(token_id=VALUES, via_stream=st.booleans())
def test_token_to_piece(m, token_id, via_stream):
    call = (lambda: m.tokenizer.stream().push(token_id)) if via_stream else (
        lambda: m.tokenizer.token_to_piece(token_id))
    _check(_is_int(token_id) and 0 <= token_id < VOCAB, call)


SHORT_TEXT = st.text(st.characters(max_codepoint=0x7FF), max_size=2)   # a chat that fits in 64 tokens
MESSAGE_FIELD = st.one_of(SHORT_TEXT, SHORT_TEXT, SURROGATES, SCALARS.filter(lambda v: not isinstance(v, str)))
MESSAGES = st.one_of(
    VALUES,
    st.lists(st.one_of(st.fixed_dictionaries({"role": MESSAGE_FIELD, "content": MESSAGE_FIELD}),
                       st.fixed_dictionaries({"role": SHORT_TEXT}), SCALARS), max_size=2),
    st.lists(st.fixed_dictionaries({"role": SHORT_TEXT, "content": SHORT_TEXT}), max_size=2).map(tuple),
)


def _messages(v):
    return isinstance(v, (list, tuple)) and all(
        isinstance(msg, dict) and all(k in msg and _text(msg[k]) for k in ("role", "content")) for msg in v)


@few
@given(messages=MESSAGES, param=st.sampled_from(["max_tokens", "stream", "temperature", "seed"]), value=VALUES)
def test_chat(m, messages, param, value):
    # the message check is tried with valid settings, the settings with a valid conversation
    _check(_messages(messages), lambda: m.chat(messages, max_tokens=1, temperature=0))
    if param == "max_tokens" and _count(value):
        value = min(int(value), 2)
    _check(VALID[param](value), lambda: m.chat(MSG, **{"max_tokens": 1, param: value}))


@few
@given(messages=MESSAGES, flag=st.booleans() | VALUES)
def test_render_chat(m, messages, flag):
    _check(_messages(messages), lambda: m.render_chat(messages))
    _check(_flag(flag), lambda: m.render_chat(MSG, add_generation_prompt=flag))


def _path_ok(v, real):
    return (isinstance(v, str) and v == real) or (isinstance(v, pathlib.Path) and str(v) == real)


LOAD_VALUES = {
    "path": VALUES | st.sampled_from(["<tiny>", "<tiny as pathlib.Path>", "<tiny as bytes>"]),
    "n_ctx": VALUES | st.integers(1, 8),
    "threads": VALUES | st.integers(0, 4),
    "passes": VALUES | st.sampled_from(PASS_NAMES) | st.lists(st.sampled_from(PASS_NAMES), max_size=3)
    | st.lists(st.sampled_from(PASS_NAMES), max_size=3).map(", ".join) | st.just("dce,,nope"),
}
MAX_THREADS = max(64, 4 * len(os.sched_getaffinity(0)))


@few
@given(param=st.sampled_from(sorted(LOAD_VALUES)), data=st.data())
def test_load_every_parameter(path, param, data):
    value = data.draw(LOAD_VALUES[param])
    assume(param != "path" or value is not None)     # None is valid: the default model, not fetched here
    value = {"<tiny>": path, "<tiny as pathlib.Path>": pathlib.Path(path),
             "<tiny as bytes>": path.encode()}.get(value, value) if isinstance(value, str) else value
    if param in ("n_ctx", "threads") and _is_int(value) and 8 < value <= 2**24:
        value = 8                        # valid, but a big KV cache or many threads is not needed here
    valid = {"path": lambda v: _path_ok(v, path),
             "n_ctx": lambda v: v is None or (_is_int(v) and 1 <= v <= 2**24),
             "threads": lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_THREADS),
             "passes": lambda v: v is None or (isinstance(v, str) and all(
                 p.strip() in PASS_NAMES for p in v.split(",") if p.strip())) or (
                 isinstance(v, (list, tuple)) and all(isinstance(p, str) and p in PASS_NAMES for p in v)),
             }[param](value)
    kwargs = {"path": path, "n_ctx": 8, "threads": 1, param: value}
    model = _check(valid, lambda: ignis.load(**kwargs))
    if model is not None:
        model.close()


@few
@given(value=VALUES, real=st.sampled_from([None, None, None, "str", "pathlib", "bytes"]))
def test_tokenizer_from_gguf_and_metadata(path, value, real):
    target = {None: value, "str": path, "pathlib": pathlib.Path(path), "bytes": path.encode()}[real]
    _check(_path_ok(target, path), lambda: Tokenizer.from_gguf(target))
    _check(False, lambda: Tokenizer.from_metadata(value))     # none of these is a vocabulary


def test_logit_bias_in_the_python_api(m):
    """generate/generate_batch take OpenAI's logit_bias: -100 on the greedy token moves the
    choice elsewhere, +100 forces a token; an id outside the logits is a one-line error."""
    m.generate([104, 105], max_tokens=1, temperature=0)
    first = m.last_result.tokens[0]
    m.generate([104, 105], max_tokens=1, temperature=0, logit_bias={first: -100})
    assert m.last_result.tokens[0] != first
    forced = 107 if first != 107 else 108
    assert m.generate_batch([[104, 105], [106]], max_tokens=3, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                            seed=5, logit_bias={forced: 100}) == [m.detokenize([forced] * 3)] * 2
    with pytest.raises(ArgumentError) as info:
        m.generate("a", max_tokens=1, logit_bias={m.n_vocab: 1.0})
    _one_line(info.value)
