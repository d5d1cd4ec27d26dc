"""The kernel Plan API refuses what would reach memory it should not (issue: "no argument
reaches memory it should not"): every add_* and run checks every argument, and a bad one is
an IgnisError (ModelError), never a signal, a TypeError/OverflowError or a silent wrap.

Calls that used to read or write out of bounds run in a child process (fuzz/plan_api.py's
case server), so a regression is a failed test, not a dead pytest. The property test drives
the whole public API with random, mostly invalid arguments the same way; the long run is
`python -m fuzz.plan_api --cases 10000` (fuzz/README.md)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

from fuzz.plan_api import (BF16, F16, F32, IQ4_NL, IQ4_XS, KV, Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0,
                           Case, Hang, Ints,
                           Opaque, Segfault, Vec, Wt,
                           cases, check_case, matmul_ref, run_case)
from ignis.errors import IgnisError, ModelError
from ignis.testing import KVCache

K = pytest.importorskip("ignis._kernels")

NONE = (None, None, None)          # run() with no tokens, positions or cache


def gate_up_case(parts, n_ff=64, k=64, T=2, threads=1):
    """gate_up_swiglu of x [T, k] against real Q8_0 weight parts of the given row counts."""
    w = [Wt(Q8_0, rows, k, 10 + i, real=True) for i, rows in enumerate(parts)]
    x_bytes, out_bytes = T * k * 4, T * n_ff * 4
    return Case(plan=(x_bytes + out_bytes, threads, T), fill=x_bytes + out_bytes, seed=1,
                ops=[("gate_up_swiglu", [0, x_bytes, w, T, k, n_ff, Q8_0])], run=NONE)


def refused_at(out, call):
    """The case ran to the end in its child, and `call` was refused with a ModelError."""
    assert out["status"] == "error", out
    kinds = {c: kind for c, kind, _ in out["errors"]}
    assert kinds.get(call) == "ModelError", out
    return out


# ------------------------------------------------------------------ gate/up part lists

@pytest.mark.parametrize("threads", [1, 2])
def test_gate_up_parts_that_split_only_the_up_half_are_refused(threads):
    # [n_ff, a, n_ff - a]: the kernel takes a gate tile's up rows from the part holding row
    # n_ff + n0, i.e. part 1 of 8 rows, and read up to 63 rows past its end (SIGSEGV here:
    # every weight part ends at an inaccessible page)
    out = run_case(gate_up_case([64, 8, 56], threads=threads))
    refused_at(out, "add_gate_up_swiglu")
    assert "split" in out["errors"][0][2]


@pytest.mark.parametrize("parts", [[128], [64, 64], [8, 56, 64], [1, 63, 64], [60, 4, 64]])
def test_gate_up_parts_that_mirror_are_accepted_and_correct(parts):
    out = run_case(gate_up_case(parts))
    assert out["status"] == "ok" and out["checked"] == 1, out


@pytest.mark.parametrize("parts", [[60, 68], [68, 60], [64, 32, 32], [16, 48, 32, 32], [8, 8, 112],
                                   [64, 1, 63]])
def test_gate_up_parts_that_do_not_split_gate_from_up_are_refused(parts):
    refused_at(run_case(gate_up_case(parts)), "add_gate_up_swiglu")


# ------------------------------------------------------------------ sizes that wrapped int64

def one_op(name, args, arena=1024, T=1, run=NONE):
    return Case(plan=(arena, 1, T), fill=arena, seed=2, ops=[(name, args)], run=run)


W8 = Wt(Q8_0, 8, 64, 3)

WRAPPING = {
    # n * 4 wrapped to 4: the region check passed, the kernel ran over 2^62 floats
    "silu n = 2^62 + 1": one_op("silu", [0, 512, 2 ** 62 + 1]),
    "add n = 2^62 + 1": one_op("add", [0, 256, 512, 2 ** 62 + 1]),
    # offset + nbytes wrapped negative
    "silu x at 2^63 - 4": one_op("silu", [2 ** 63 - 4, 0, 2]),
    "silu out at 2^63 - 8": one_op("silu", [0, 2 ** 63 - 8, 2]),
    "rmsnorm x at 2^63 - 4": one_op("rmsnorm", [2 ** 63 - 4, 0, Vec(4, 1), 1, 4, 1e-6]),
    "take_last x at 2^63 - 4": one_op("take_last", [2 ** 63 - 4, 0, 1, 4]),
    # rows * dim * 4 wrapped
    "rms_inv dim = 2^62 + 1": one_op("rms_inv", [0, 512, 1, 2 ** 62 + 1, 1e-6]),
    "take_last dim = 2^62 + 1": one_op("take_last", [0, 512, 1, 2 ** 62 + 1]),
    "matmul k = 2^62 + 32": one_op("matmul", [0, 512, W8, 1, 2 ** 62 + 32, 8, Q8_0, "q8_0"]),
    "add_bias n = 2^62 + 1": one_op("add_bias", [0, 512, Vec(4, 1), 1, 2 ** 62 + 1]),
    # too large for int64 (OverflowError from the argument conversion)
    "matmul out = 2^64 + 4": one_op("matmul", [0, 2 ** 64 + 4, W8, 1, 64, 8, Q8_0, "q8_0"]),
    "add n = 2^64 + 1": one_op("add", [0, 256, 512, 2 ** 64 + 1]),
    "rope n_heads = 2^31": one_op("rope", [0, 512, 2 ** 31, 4, 1e4]),
    "kv_write layer = 2^63": one_op("kv_write", [0, 512, 2 ** 63, 1, 4]),
    "embed wtype = 2^40": one_op("embed", [0, W8, 64, 2 ** 40]),
    "rms_inv eps = 10^400": one_op("rms_inv", [0, 512, 1, 4, 10 ** 400]),
    # heads x head_dim beyond any region
    "attention head_dim = 2^40": one_op("attention", [0, 512, 0, 1, 1, 2 ** 40]),
}


@pytest.mark.parametrize("case", WRAPPING.values(), ids=WRAPPING.keys())
def test_sizes_that_wrapped_or_overflowed_are_refused(case):
    refused_at(run_case(case), "add_" + case.ops[0][0])


@pytest.mark.parametrize("args", [(2 ** 63, 1, 1), (2 ** 40 + 1, 1, 1), (2 ** 70, 1, 1), (-1, 1, 1), (1024, 10 ** 6, 1),
                                  (1024, 2 ** 31, 1), (1024, 1, 2 ** 40), (1024, 1, 2 ** 20 + 1), (1024, 0, 1),
                                  ("1024", 1, 1), (1024.0, 1, 1), (1024, None, 1), (1024, 1, [1]), (True, 1, 1)])
def test_bad_plan_sizes_are_refused(args):
    refused_at(run_case(Case(plan=args, fill=0, seed=0, ops=[], run=NONE)), "Plan")


def test_an_arena_that_cannot_be_allocated_is_a_model_error_naming_its_size():
    with pytest.raises(ModelError, match=str(2 ** 40)):
        K.Plan(2 ** 40, 1, 1)


# ------------------------------------------------------------------ wrong Python types

WRONG_TYPES = {
    "matmul rows '1'": one_op("matmul", [0, 512, W8, "1", 64, 8, Q8_0, "q8_0"]),
    "matmul k 64.0": one_op("matmul", [0, 512, W8, 1, 64.0, 8, Q8_0, "q8_0"]),
    "matmul n None": one_op("matmul", [0, 512, W8, 1, 64, None, Q8_0, "q8_0"]),
    "matmul x [0]": one_op("matmul", [[0], 512, W8, 1, 64, 8, Q8_0, "q8_0"]),
    "matmul wtype '8'": one_op("matmul", [0, 512, W8, 1, 64, 8, "8", "q8_0"]),
    "matmul wtype 8.0": one_op("matmul", [0, 512, W8, 1, 64, 8, 8.0, "q8_0"]),
    "matmul wtype [8, '8']": one_op("matmul", [0, 512, [W8, W8], 1, 64, 16, [8, "8"], "q8_0"]),
    "matmul act None": one_op("matmul", [0, 512, W8, 1, 64, 8, Q8_0, None]),
    "matmul weight list with None": one_op("matmul", [0, 512, [W8, None], 1, 64, 8, Q8_0, "q8_0"]),
    "matmul 0-d weight": one_op("matmul", [0, 512, Wt(F32, 1, 1, 3, form="0d"), 1, 1, 1, F32, "q8_0"]),
    "matmul empty part list": one_op("matmul", [0, 512, [], 1, 64, 8, Q8_0, "q8_0"]),
    "rms_inv eps None": one_op("rms_inv", [0, 512, 1, 4, None]),
    "rms_inv eps NaN": one_op("rms_inv", [0, 512, 1, 4, float("nan")]),
    "rmsnorm eps -1": one_op("rmsnorm", [0, 512, Vec(4, 1), 1, 4, -1.0]),
    "rmsnorm g strings": one_op("rmsnorm", [0, 512, Vec(4, 1, "str"), 1, 4, 1e-6]),
    "rmsnorm g 'abc'": one_op("rmsnorm", [0, 512, "abc", 1, 4, 1e-6]),
    "rmsnorm g complex": one_op("rmsnorm", [0, 512, Vec(4, 1, "complex64"), 1, 4, 1e-6]),
    "add_bias b object": one_op("add_bias", [0, 512, Opaque(), 1, 4]),
    "rope theta '1e4'": one_op("rope", [0, 512, 1, 4, "1e4"]),
    "rope theta inf": one_op("rope", [0, 512, 1, 4, float("inf")]),
    "rope theta 0": one_op("rope", [0, 512, 1, 4, 0.0]),
    "qkv theta NaN": one_op("qkv_rope_kv", [0, 512, Wt(Q8_0, 12, 64, 1), None, 0, 1, 1, 4, float("nan"), 64, Q8_0]),
    "add b None": one_op("add", [0, None, 512, 4]),              # was taken for silu's "no b": read arena[-1]
    "swiglu u None": one_op("swiglu", [0, None, 512, 4]),
    "mul b '0'": one_op("mul", [0, "0", 512, 4]),
    "silu n [3]": one_op("silu", [0, 512, [3]]),
    "silu n True": one_op("silu", [0, 512, True]),
}


@pytest.mark.parametrize("case", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_types_and_values_are_model_errors(case):
    refused_at(run_case(case), "add_" + case.ops[0][0])


def test_numpy_integers_are_still_integers():
    w = Wt(Q8_0, 8, 64, 3)
    out = run_case(one_op("matmul", [np.int64(0), np.int32(512), w, np.uint8(1), np.int16(64), np.array(8),
                                     np.int64(Q8_0), np.str_("q16")]))
    assert out["status"] == "ok" and out["checked"] == 1, out


def test_an_ndarray_subclass_is_used_by_its_real_buffer():
    # it claims its data lives at address 8 (the old code read from there: SIGSEGV)
    out = run_case(one_op("matmul", [0, 512, Wt(Q8_0, 8, 64, 3, form="sub"), 1, 64, 8, Q8_0, "q8_0"]))
    assert out["status"] == "ok" and out["checked"] == 1, out


# ------------------------------------------------------------------ run(): tokens, positions, KV

def kv_case(kv, positions=Ints((0, 1))):
    """kv_write of 2 tokens x 1 head x 4 into layer 0 of the given cache."""
    return Case(plan=(1024, 1, 2), fill=1024, seed=3, ops=[("kv_write", [0, 64, 0, 1, 4])],
                run=(None, positions, kv))


KV_GOOD = KV((1, 4, 1, 4), 5)
BAD_KV = {
    "object without .k": Opaque(),
    "a string": "kv",
    "a tuple of 3": KV((1, 4, 1, 4), 5, how="tuple3"),
    "a tuple of 1": KV((1, 4, 1, 4), 5, how="tuple1"),
    "no .v": KV((1, 4, 1, 4), 5, how="k_only"),
    "a dict": KV((1, 4, 1, 4), 5, how="dict"),
    "float32 arrays": KV((1, 4, 1, 4), 5, dtype="float32"),
    "read-only": KV((1, 4, 1, 4), 5, form="readonly"),
    "not contiguous": KV((1, 4, 1, 4), 5, form="strided"),
    "3-D": KV((1, 4, 4), 5),
    "k and v of different shapes": KV((1, 4, 1, 4), 5, vshape=(1, 3, 1, 4)),
    "too few heads": KV((1, 4, 2, 4), 5),
}


@pytest.mark.parametrize("kv", BAD_KV.values(), ids=BAD_KV.keys())
def test_bad_kv_caches_are_refused(kv):
    refused_at(run_case(kv_case(kv)), "run")


def test_a_good_kv_cache_is_written_exactly_where_it_should_be():
    for kv in (KV_GOOD, KV((1, 4, 1, 4), 5, how="tuple"), KV((1, 4, 1, 4), 5, form="sub")):
        out = run_case(kv_case(kv))
        assert out["status"] == "ok" and out["checked"] == 1, (kv, out)
    # k and v may even be one array (v wins): no memory it should not reach
    assert run_case(kv_case(KV((1, 4, 1, 4), 5, how="same")))["status"] == "ok"


def embed_case(tokens, T=2):
    return Case(plan=(T * 64 * 4, 1, T), fill=0, seed=4, ops=[("embed", [0, Wt(Q8_0, 10, 64, 3), 64, Q8_0])],
                run=(tokens, None, None))


BAD_TOKENS = {
    "2^32 + 5 (wrapped to 5)": Ints((2 ** 32 + 5, 1), "int64"),
    "-2^32 + 1 (wrapped to 1)": Ints((-2 ** 32 + 1, 1), "int64"),
    "2^64 - 1": Ints((2 ** 64 - 1, 1), "uint64"),
    "floats (truncated)": Ints((0.7, 1.2), "float64"),
    "float32": Ints((0.0, 1.0), "float32"),
    "strings": Ints(("1", "2"), "U2"),
    "objects": Ints((2 ** 70, 1), "object"),
    "bools": Ints((True, False), "bool"),
    "empty": Ints((), "int32"),
    "2-D": Ints((1, 2), "int32", (1, 2)),
    "3 tokens for 2": Ints((1, 2, 3), "int32"),
    "a string": "12",
    "an object": Opaque(),
    "list of floats": [0.0, 1.0],
    "out of range": Ints((10, 1), "int32"),
    "negative": Ints((-1, 1), "int32"),
}


@pytest.mark.parametrize("tokens", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_bad_tokens_are_refused_before_the_cast(tokens):
    refused_at(run_case(embed_case(tokens)), "run")


@pytest.mark.parametrize("positions", [Ints((2 ** 32, 1), "int64"), Ints((0.0, 1.0), "float64"), Ints(("0", "1"), "U1"),
                                       Ints((0, 1, 2)), Ints((0, 1), "int32", (2, 1)), Ints(()), Ints((-1, 0)),
                                       None, [0.5, 1.5]])
def test_bad_positions_are_refused(positions):
    refused_at(run_case(kv_case(KV_GOOD, positions)), "run")


def test_position_beyond_the_cache_is_a_context_overflow():
    out = run_case(kv_case(KV_GOOD, Ints((3, 4))))
    assert [kind for _, kind, _ in out["errors"]] == ["ContextOverflowError"], out


def test_valid_token_dtypes_and_lists_still_work():
    for tokens in (Ints((3, 9)), Ints((3, 9), "int64"), Ints((3, 9), "uint8"), Ints((3, 9), form="list")):
        out = run_case(embed_case(tokens))
        assert out["status"] == "ok" and out["checked"] == 1, (tokens, out)


# ------------------------------------------------------------------ in-process checks (no kernel reads)

def test_plan_is_initialised_once():
    plan = K.Plan(1024, 1, 1)
    plan.add_silu(0, 512, 4)
    with pytest.raises(ModelError):
        plan.__init__(64, 1, 8)                  # would have dropped the weights and changed T
    assert plan.n_instructions == 1 and plan.n_tokens == 1 and plan.arena_bytes == 1024


def test_an_uninitialised_plan_refuses_everything():
    plan = K.Plan.__new__(K.Plan)
    for call in (lambda: plan.add_silu(0, 512, 4), lambda: plan.run(), lambda: plan.f32(0, 4)):
        with pytest.raises(ModelError):
            call()


def test_plan_state_changes_are_not_reachable_from_python():
    # a KV geometry changed behind the instructions' back made kv_write store more floats
    # per row than the instruction's region holds
    for name in ("_kv_commit", "_elementwise", "_wrote", "_run", "_ensure_scratch", "_push", "_set_parts"):
        assert not hasattr(K.Plan, name), name


def test_plan_cannot_be_subclassed():
    with pytest.raises(TypeError):
        type("Evil", (K.Plan,), {"_region": lambda *a: 0})


def test_a_failed_add_leaves_the_plan_as_it_was():
    plan = K.Plan(4096, 1, 2)
    w = K.quantize_q8_0(np.ones((24, 64), np.float32))
    # the layer and geometry would have been recorded before the region check failed
    with pytest.raises(ModelError):
        plan.add_qkv_rope_kv(0, 4000, w, None, 3, 2, 1, 8, 1e4, 64)
    with pytest.raises(ModelError):
        plan.add_attention(0, 4000, 5, 2, 2, 8)
    plan.add_attention(0, 512, 0, 2, 1, 16)      # another KV geometry: fine, nothing was recorded
    kv = KVCache(1, 4, 1, 16)
    plan.run(positions=np.array([0, 1], np.int32), kv=kv)


def test_an_argument_that_reenters_the_plan_is_refused():
    plan = K.Plan(1024, 1, 1)

    class Sneaky:
        def __init__(self, call):
            self.call = call

        def __index__(self):
            self.call()                          # extends or runs the plan in the middle of an add
            return 4

    for call in (lambda: plan.add_silu(0, 512, 4), lambda: plan.run()):
        with pytest.raises(ModelError):
            plan.add_silu(0, 512, Sneaky(call))
    assert plan.n_instructions == 0


def test_a_plan_cannot_be_extended_while_it_runs():
    # (an instruction appended during a run reallocates the list the threads are reading)
    plan = K.Plan(1024, 1, 1)
    plan.add_silu(0, 512, 4)

    class Tokens:
        def __array__(self, dtype=None, copy=None):
            plan.add_silu(0, 512, 4)
            return np.array([0], np.int32)

    with pytest.raises(ModelError):
        plan.run(tokens=Tokens())
    assert plan.n_instructions == 1
    plan.run()                                   # and the plan is usable afterwards


def test_f32_views_check_their_shape():
    plan = K.Plan(1024, 1, 1)
    assert plan.f32(0, (2, 3)).shape == (2, 3) and plan.f32(4, 5).shape == (5,)
    for shape in [(-1, -4), (2 ** 62 + 1, 2 ** 62 + 1), (0,), ("2",), (2.0,), (2 ** 64,), None]:
        with pytest.raises(ModelError):
            plan.f32(0, shape)
    with pytest.raises(ModelError):
        plan.f32(2 ** 63 - 4, 1)


@pytest.mark.parametrize("call", [
    lambda: K.matmul(np.ones((1, 32), np.float32), K.quantize_q8_0(np.ones((2, 32), np.float32)), "8"),
    lambda: K.matmul(np.ones((1, 32), np.float32), K.quantize_q8_0(np.ones((2, 32), np.float32)), act=None),
    lambda: K.matmul(np.ones((1, 32), np.float32), K.quantize_q8_0(np.ones((2, 32), np.float32)), threads=2 ** 40),
    lambda: K.matmul([["a"] * 32], K.quantize_q8_0(np.ones((2, 32), np.float32))),
    lambda: K.rms_inv(np.ones((1, 4), np.float32), "1e-6"),
    lambda: K.rmsnorm(np.ones((1, 4), np.float32), np.ones(4, np.float32), float("nan")),
    lambda: K.rope(np.ones((1, 8), np.float32), np.array([0], np.int32), "2", 4, 1e4),
    lambda: K.embed(np.array([2 ** 32 + 1], np.int64), K.quantize_q8_0(np.ones((4, 32), np.float32)), 32),
    lambda: K.embed(np.array([0.5]), K.quantize_q8_0(np.ones((4, 32), np.float32)), 32),
    lambda: K.silu(np.array(["x"])),
    lambda: K.add(np.ones(3), np.ones(3), threads="2"),
    lambda: KVCache("2", 4, 1, 4),
    lambda: KVCache(1, 2 ** 30, 1, 4),
    lambda: KVCache(2 ** 16, 2 ** 24, 2 ** 16, 2 ** 16),
    lambda: K.row_nbytes("8", 32),
    lambda: K.row_nbytes(8, 33.0),
    lambda: K.row_nbytes(8, None),
    lambda: K.quantize_q8_0("abc"),
])
def test_standalone_functions_check_their_arguments(call):
    with pytest.raises(ModelError):
        call()


def test_valid_standalone_calls_are_unchanged():
    r = np.random.default_rng(0)
    x = r.standard_normal((3, 64)).astype(np.float32)
    w = K.quantize_q8_0(r.standard_normal((8, 64)).astype(np.float32) * 0.1)
    assert np.array_equal(K.matmul(x, w, np.int64(Q8_0)), K.matmul(x, w, Q8_0, 1, "q8_0"))
    assert K.row_nbytes(np.int32(Q8_0), np.int64(64)) == 68
    assert KVCache(np.int64(1), 4, 1, 4).k.shape == (1, 4, 1, 4)


# ------------------------------------------------------------------ the harness itself

def test_the_reference_notices_a_wrong_matmul():
    """The bound the property test holds a matmul to is tight enough to see rows from the
    wrong place (what a bad part boundary produces when it stays in bounds)."""
    r = np.random.default_rng(1)
    x = r.standard_normal((3, 64)).astype(np.float32)
    w = K.quantize_q8_0(r.standard_normal((8, 64)).astype(np.float32) * 0.1)
    ref, bound = matmul_ref(x.astype(np.float64), [(w, Q8_0)], 64)
    assert np.all(np.abs(K.matmul(x, w) - ref) <= bound)
    wrong = K.matmul(x, np.roll(w, 1, axis=0))
    assert not np.all(np.abs(wrong - ref) <= bound)


def test_a_signal_in_the_child_fails_the_case():
    case = Case(plan=(Segfault(), 1, 1), fill=0, seed=0, ops=[], run=None)
    out = run_case(case)
    assert out["status"] == "crash" and "SIGSEGV" in out["detail"], out
    with pytest.raises(AssertionError, match="crash"):
        check_case(case)
    # and the next case runs normally
    assert run_case(one_op("silu", [0, 512, 4]))["status"] == "ok"


def test_a_hang_in_the_child_fails_the_case():
    out = run_case(Case(plan=(Hang(), 1, 1), fill=0, seed=0, ops=[], run=None), timeout=2)
    assert out["status"] == "timeout", out


# ------------------------------------------------------------------ the property

@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(case=cases())
@example(case=gate_up_case([64, 8, 56], T=3, threads=2))
@example(case=one_op("add", [0, None, 512, 4]))
def test_random_plan_api_calls_give_an_ignis_error_or_a_correct_result(case):
    """Every case: the child exits normally; each call returns or raises a one-line
    IgnisError; a failed add_* leaves the plan unchanged; after a run, results match the
    numpy/gguf reference and nothing outside the written regions (arena, KV rows) changed."""
    check_case(case)


def test_every_public_add_method_is_fuzzed():
    from fuzz.plan_api import SIGS, plan_ops
    public = {name[4:] for name in dir(K.Plan) if name.startswith("add_")}
    assert public <= set(SIGS) and set(plan_ops()) == public


def test_every_kernel_weight_type_is_covered():
    assert {F32, F16, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, Q4_0, Q5_1, IQ4_NL, BF16, Q2_K, Q3_K, Q5_K, IQ4_XS} == set(K._BLOCK)
    assert issubclass(ModelError, IgnisError)
