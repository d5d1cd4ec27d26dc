"""Plan.run's block-table checks (ignis/kernels/plan_run.pxi: `_tables` and the pairing of
kv_local with tables_local): every table entry a block of its cache, block_size dividing the
cache, each position covered by its sequence's table, no two tokens writing one cache row,
seqs with tables, tables with seqs, tables_local with kv_local and the reverse.

A refused call must be refused before the nogil run: each bad case goes through the Plan API
fuzzer's child runner (fuzz/plan_api), so a check that is missing shows as a crash or a wrong
write in a child, not as a dead pytest. Valid tables are checked in process: the rows written
are the ones the tables name, and nothing else moves."""
import numpy as np
import pytest

from fuzz.plan_api import KV, Case, Ints, run_case
from ignis.errors import ContextOverflowError, ModelError

K = pytest.importorskip("ignis._kernels")

T, HD, KVH = 2, 4, 1
K_OFF, V_OFF = 0, T * KVH * HD * 4            # the arena: k rows, then v rows
ARENA = 2 * V_OFF
KV_WRITE = ("kv_write", [K_OFF, V_OFF, 0, KVH, HD])
ATTENTION = ("attention", [K_OFF, V_OFF, 0, 1, KVH, HD])
KV_WRITE_LOCAL = ("kv_write", [K_OFF, V_OFF, 0, KVH, HD, 1])   # pool 1: the kv_local cache


def tables(rows):
    return Ints(tuple(v for row in rows for v in row), "int32", (len(rows), len(rows[0])))


def run(ops, positions=(0, 1), kv_rows=8, **keywords):
    """run_case of a T=2 plan with `ops`; keywords go to Plan.run as specs."""
    case = Case(plan=(ARENA, 1, T), fill=ARENA, seed=3, ops=list(ops),
                run=(None, Ints(tuple(positions)), KV((1, kv_rows, KVH, HD), 5), keywords))
    return run_case(case)


def refused(out, needle, kind="ModelError"):
    assert out["status"] == "error", out
    assert out["adds_failed"] == 0, out["errors"]
    call, got_kind, message = out["errors"][-1]
    assert call == "run" and got_kind == kind and needle in message, out["errors"]


# -- each check, with the one input that breaks only it ------------------------------------------

def test_a_table_entry_outside_the_cache_is_refused():
    # 8 rows in blocks of 2: blocks 0..3; block 4 would be rows 8..9, past the cache
    refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=tables([[0], [4]]), block_size=2),
            "table entry is outside the cache's 4 blocks")
    refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=tables([[-1], [1]]), block_size=2),
            "table entry is outside")
    # a wider type is checked before its int32 copy, which would wrap 2**32 to block 0
    for bad in (4, -1, 2**32):
        refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=Ints((0, bad), "int64", (2, 1)), block_size=2),
                "table entry is outside")


def test_a_block_size_that_does_not_divide_the_cache_is_refused():
    refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=tables([[0], [1]]), block_size=3),
            "block_size 3 does not divide the cache's 8 rows")
    refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=tables([[0], [1]]), block_size=0),
            "block_size 0 does not divide")


def test_two_tokens_writing_one_row_are_refused():
    # both sequences' tables name block 1: position 0 of each is row 2
    refused(run([KV_WRITE], positions=(0, 0), seqs=Ints((0, 1)), tables=tables([[1], [1]]), block_size=2),
            "two tokens of the step write the same cache row")


def test_reading_one_row_twice_is_fine():
    # the same shared block read by two tokens (attention only writes nothing)
    out = run([ATTENTION], positions=(0, 0), seqs=Ints((0, 1)), tables=tables([[1], [1]]), block_size=2)
    assert out["status"] == "ok", out


def test_a_position_past_its_table_is_a_context_overflow():
    refused(run([KV_WRITE], positions=(0, 2), seqs=Ints((0, 1)), tables=tables([[0], [1]]), block_size=2),
            "does not fit the KV cache of 2 positions", kind="ContextOverflowError")


def test_a_token_whose_table_row_does_not_exist_is_refused():
    refused(run([KV_WRITE], seqs=Ints((0, 2)), tables=tables([[0], [1]]), block_size=2),
            "table row is outside [0, 2)")


def test_tables_need_seqs_and_seqs_need_tables():
    refused(run([KV_WRITE], tables=tables([[0], [1]]), block_size=2), "tables need seqs")
    refused(run([KV_WRITE], seqs=Ints((0, 1))), "seqs and block_size come with tables")
    refused(run([KV_WRITE], block_size=2), "seqs and block_size come with tables")


def test_tables_of_the_wrong_shape_are_refused():
    refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=Ints((0, 1)), block_size=2), "2-D integer array")
    refused(run([KV_WRITE], seqs=Ints((0, 1)), tables=Ints((0.0, 1.0), "float32", (2, 1)), block_size=2),
            "2-D integer array")


def test_tables_for_a_plan_without_a_kv_cache_are_refused():
    case = Case(plan=(ARENA, 1, T), fill=ARENA, seed=3, ops=[("silu", [K_OFF, V_OFF, 4])],
                run=(None, None, None, {"seqs": Ints((0, 1)), "tables": tables([[0], [1]]), "block_size": 2}))
    refused(run_case(case), "are for plans that use the KV cache")


def test_kv_local_and_tables_local_come_together():
    local = KV((1, 8, KVH, HD), 9)
    # tables_local without kv_local
    refused(run([KV_WRITE_LOCAL], tables_local=tables([[0], [1]]), seqs=Ints((0, 1)), block_size=2),
            "tables_local comes with kv_local")
    # kv_local for a plan whose KV layers are all in pool 0
    refused(run([KV_WRITE], kv_local=local, tables_local=tables([[0], [1]])),
            "kv_local and tables_local are for plans with KV layers in pool 1")
    # a plan with pool-1 layers and kv_local, but no tables_local
    refused(run([KV_WRITE_LOCAL], kv_local=local), "needs tables_local")
    # both pools in one plan: tables for pool 0 too
    both = [KV_WRITE, ("kv_write", [K_OFF, V_OFF, 0, KVH, HD, 1])]
    refused(run(both, kv_local=local, tables_local=tables([[0], [1]]), seqs=Ints((0, 1)), block_size=2),
            "needs tables for both")


# -- valid tables: the rows the tables name, and no others --------------------------------------

def _kv_write_plan(pool=0):
    plan = K.Plan(ARENA, 1, T)
    plan.add_kv_write(K_OFF, V_OFF, 0, KVH, HD, pool)
    x = np.arange(2 * T * KVH * HD, dtype=np.float32) + 1
    plan.f32(0, 2 * T * KVH * HD)[:] = x
    return plan, x[:T * HD].reshape(T, HD), x[T * HD:].reshape(T, HD)


@pytest.mark.parametrize("seqs, table, positions", [
    ((0, 1), [[3, 0], [1, 2]], (2, 1)),          # sequence 0 at position 2: block 0, row 0
    ((1, 1), [[0, 1], [2, 3]], (0, 3)),          # one sequence, two blocks
    ((0, 0), [[3, 2], [0, 1]], (1, 2)),
])
def test_valid_tables_write_the_rows_they_name(seqs, table, positions):
    plan, k, v = _kv_write_plan()
    kc, vc = np.zeros((1, 8, KVH, HD), np.float16), np.zeros((1, 8, KVH, HD), np.float16)
    plan.run(positions=np.array(positions, np.int32), kv=(kc, vc), seqs=np.array(seqs, np.int32),
             tables=np.array(table, np.int32), block_size=2)
    want_k, want_v = np.zeros_like(kc), np.zeros_like(vc)
    for t, (s, p) in enumerate(zip(seqs, positions)):
        row = table[s][p // 2] * 2 + p % 2
        want_k[0, row, 0], want_v[0, row, 0] = k[t], v[t]
    assert np.array_equal(kc, want_k) and np.array_equal(vc, want_v)


def test_the_local_pool_is_addressed_by_tables_local():
    plan, k, _ = _kv_write_plan(pool=1)
    local = (np.zeros((1, 4, KVH, HD), np.float16), np.zeros((1, 4, KVH, HD), np.float16))
    plan.run(positions=np.array([5, 0], np.int32), kv_local=local, seqs=np.array([0, 1], np.int32),
             tables_local=np.array([[1, 0, 1], [0, 1, 0]], np.int32), block_size=2)
    assert np.array_equal(local[0][0, 3, 0], k[0].astype(np.float16))     # position 5: block 1, row 1
    assert np.array_equal(local[0][0, 0, 0], k[1].astype(np.float16))     # position 0: block 0, row 0
    assert np.count_nonzero(local[0]) == 2 * HD


def test_in_process_refusals_leave_the_cache_untouched():
    plan, _, _ = _kv_write_plan()
    kc, vc = np.zeros((1, 8, KVH, HD), np.float16), np.zeros((1, 8, KVH, HD), np.float16)
    with pytest.raises(ContextOverflowError):
        plan.run(positions=np.array([0, 4], np.int32), kv=(kc, vc), seqs=np.array([0, 1], np.int32),
                 tables=np.array([[0, 1], [2, 3]], np.int32), block_size=2)
    with pytest.raises(ModelError):
        plan.run(positions=np.array([0, 2], np.int32), kv=(kc, vc), seqs=np.array([0, 0], np.int32),
                 tables=np.array([[0, 0]], np.int32), block_size=2)        # positions 0 and 2: both row 0
    assert not kc.any() and not vc.any()
