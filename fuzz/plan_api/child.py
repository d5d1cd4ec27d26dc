"""Running one case in the child: every call returns or raises a one-line IgnisError, a failed
add_* leaves the plan unchanged, and after a run every checkable instruction matches the
reference while nothing outside the written regions changed."""
from __future__ import annotations

import numpy as np

from fuzz.plan_api.build import build
from fuzz.plan_api.oracle import CaseFailure, Oracle, Paging, _ints
from fuzz.plan_api.specs import SIGS, Case


def _regions(name, a, T):
    """(reads, writes, kv_read, kv_write) of a successful add: arena regions as (offset, nbytes);
    kv_read / kv_write: the KV pool it reads / writes (0 or 1), or None."""
    i = {key: a[key] for key, _ in SIGS[name] if key in a}
    n_ = lambda key: _ints(i[key])
    pool = _ints(i.get("pool", 0))
    if name == "embed":
        return [], [(n_("out"), T * n_("dim") * 4)], None, None
    if name == "rms_inv":
        return [(n_("x"), n_("rows") * n_("dim") * 4)], [(n_("out"), n_("rows") * 4)], None, None
    if name in ("scale_rows",):
        r, d = n_("rows"), n_("dim")
        return [(n_("x"), r * d * 4), (n_("r"), r * 4)], [(n_("out"), r * d * 4)], None, None
    if name in ("matmul", "matmul_bias", "gate_up_swiglu", "gate_up_geglu"):
        r, k = n_("rows"), n_("k")
        n = n_("n_ff") if name.startswith("gate_up") else n_("n")
        return [(n_("x"), r * k * 4)], [(n_("out"), r * n * 4)], None, None
    if name == "matmul_add":
        r, k, n = n_("rows"), n_("k"), n_("n")
        return [(n_("x"), r * k * 4), (n_("res"), r * n * 4)], [(n_("out"), r * n * 4)], None, None
    if name == "add_bias":
        r, n = n_("rows"), n_("n")
        return [(n_("y"), r * n * 4)], [(n_("out"), r * n * 4)], None, None
    if name == "rope":
        nb = T * n_("n_heads") * n_("head_dim") * 4
        return [(n_("x"), nb)], [(n_("out"), nb)], None, None
    if name == "kv_write":
        nb = T * n_("n_kv_heads") * n_("head_dim") * 4
        return [(n_("k"), nb), (n_("v"), nb)], [], None, pool
    if name == "attention":
        nb = T * n_("n_heads") * n_("head_dim") * 4
        return [(n_("q"), nb)], [(n_("out"), nb)], pool, None
    if name in ("add", "mul", "swiglu"):
        keys = [key for key, _ in SIGS[name]]
        nb = n_("n") * 4
        return [(n_(keys[0]), nb), (n_(keys[1]), nb)], [(n_("out"), nb)], None, None
    if name in ("silu", "gelu", "scale"):
        return [(n_("x"), n_("n") * 4)], [(n_("out"), n_("n") * 4)], None, None
    if name == "head_rmsnorm":
        nb = n_("rows") * n_("n_heads") * n_("head_dim") * 4
        return [(n_("x"), nb)], [(n_("out"), nb)], None, None
    if name == "rmsnorm_add":
        nb = n_("rows") * n_("dim") * 4
        return [(n_("y"), nb), (n_("res"), nb)], [(n_("out"), nb)], None, None
    if name == "take_last":
        return [(n_("x"), n_("rows") * n_("dim") * 4)], [(n_("out"), n_("dim") * 4)], None, None
    if name == "take_rows":
        return ([(n_("x"), n_("rows") * n_("dim") * 4)], [(n_("out"), n_("n_out") * n_("dim") * 4)],
                None, None)
    if name == "rmsnorm":
        nb = n_("rows") * n_("dim") * 4
        return [(n_("x"), nb)], [(n_("out"), nb)], None, None
    if name in ("qkv_rope_kv", "qkv_norm_rope_kv"):
        return ([(n_("x"), T * n_("k") * 4)], [(n_("q_out"), T * n_("n_heads") * n_("head_dim") * 4)],
                None, pool)
    raise AssertionError(name)


def _overlap(a, b):
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def _one_line(e: Exception, where: str) -> None:
    msg = str(e)
    if not msg or "\n" in msg:
        raise CaseFailure(f"{where}: {type(e).__name__} message is not one line: {msg!r}")


def execute(case: Case) -> dict:
    """Run a case. Returns {"status": "ok" (no error) | "error" (IgnisErrors only),
    "errors": [(call, error type, message)], ...}; raises CaseFailure when a property breaks."""
    from ignis import _kernels as K
    from ignis.errors import IgnisError

    info = {"status": "ok", "errors": [], "adds_ok": 0, "adds_failed": 0, "checked": 0, "ran": False}

    def refused(call, e):
        _one_line(e, call)
        info["status"] = "error"
        info["errors"].append((call, type(e).__name__, str(e)))

    try:
        plan = K.Plan(*build(case.plan))
    except IgnisError as e:
        refused("Plan", e)
        return info
    except Exception as e:
        raise CaseFailure(f"Plan{case.plan!r} raised {type(e).__name__}: {e}") from None
    T = plan.n_tokens
    fill = min(plan.arena_bytes, case.fill + 4096)
    r = np.random.default_rng(case.seed)
    nf = min(plan.arena_bytes, case.fill) // 4
    plan.arena[:nf * 4].view(np.float32)[:] = r.standard_normal(nf).astype(np.float32)
    snap = plan.arena[:fill].copy()
    done = []
    for name, spec in case.ops:
        args = build(spec)
        before = (plan.n_instructions, plan.describe())
        try:
            getattr(plan, "add_" + name)(*args)
        except IgnisError as e:
            refused(f"add_{name}", e)
            info["adds_failed"] += 1
            if (plan.n_instructions, plan.describe()) != before:
                raise CaseFailure(f"add_{name} failed ({e}) but changed the plan") from None
            continue
        except Exception as e:
            raise CaseFailure(f"add_{name}{tuple(spec)!r} raised {type(e).__name__}: {e}") from None
        info["adds_ok"] += 1
        done.append((name, {key: v for (key, _), v in zip(SIGS[name], args)}))
    if case.run is None:
        return info
    tokens, positions, kv, *more = build(case.run)
    run_kw = more[0] if more else {}
    kv_arrays = {pool: _kv_pair(cache) for pool, cache in ((0, kv), (1, run_kw.get("kv_local")))}
    kv_arrays = {pool: pair for pool, pair in kv_arrays.items() if pair is not None}
    kv_before = {pool: tuple(a.copy() for a in pair) for pool, pair in kv_arrays.items()}
    try:
        plan.run(tokens, positions, kv, **run_kw)
    except IgnisError as e:
        refused("run", e)
        return info
    except Exception as e:
        raise CaseFailure(f"run raised {type(e).__name__}: {e}") from None
    info["ran"] = True
    seqs, bs = _as_index_array(run_kw.get("seqs")), run_kw.get("block_size")
    paging = {0: Paging(seqs, run_kw.get("tables"), bs) if run_kw.get("tables") is not None else Paging(),
              1: Paging(seqs, run_kw.get("tables_local"), bs)}
    info["checked"] = _check_run(plan, T, done, snap, tokens, positions, kv_arrays, kv_before,
                                 run_kw.get("rows"), paging)
    return info


def _kv_pair(kv):
    """The (k, v) arrays of a cache argument the run accepted, or None."""
    if kv is None:
        return None
    try:
        kc, vc = (kv if isinstance(kv, tuple) else (kv.k, kv.v))
    except Exception:
        return None
    if isinstance(kc, np.ndarray) and isinstance(vc, np.ndarray):
        return np.asarray(kc), np.asarray(vc)
    return None


def _as_index_array(v):
    """tokens / positions as int64 (None if absent or not integers: then no instruction used them)."""
    try:
        a = np.asarray(v)
        return a.astype(np.int64).reshape(-1) if v is not None and a.dtype.kind in "iu" else None
    except (TypeError, ValueError, OverflowError):
        return None


def _check_run(plan, T, done, snap, tokens, positions, kv_arrays, kv_before, take=None, paging=None) -> int:
    """Reference values and untouched memory after a successful run; returns how many
    instructions were value-checked. kv_arrays / kv_before: {pool: (k, v)}; paging: {pool:
    Paging}, where each token's positions live in each pool."""
    paging = paging or {0: Paging(), 1: Paging()}
    final = plan.arena[:snap.size]
    regs = [_regions(name, a, T) for name, a in done]
    # nothing outside the written regions changed
    written = np.zeros(snap.size, bool)
    for _, writes, _, _ in regs:
        for o, nb in writes:
            written[max(0, o):max(0, min(snap.size, o + nb))] = True
    changed = (final != snap) & ~written
    if changed.any():
        at = int(np.argmax(changed))
        raise CaseFailure(f"arena byte {at} changed outside every written region")
    pos, tok, take = _as_index_array(positions), _as_index_array(tokens), _as_index_array(take)
    writers = {pool: [j for j, reg in enumerate(regs) if reg[3] == pool] for pool in (0, 1)}
    rows = {pool: paging[pool].rows(pos) for pool in (0, 1) if writers[pool]}
    for pool, (k_now, v_now) in kv_arrays.items():
        # nothing but the (layer, row) pairs the pool's writers name changed
        mask = np.ones(k_now.shape[:2], bool)
        for j in writers[pool]:
            mask[_ints(done[j][1]["layer"]), rows[pool]] = False
        for a, b in zip((k_now, v_now), kv_before[pool]):
            if not np.array_equal(a[mask].view(np.uint16), b[mask].view(np.uint16)):
                raise CaseFailure(f"KV cache (pool {pool}) rows changed that no instruction writes")
    f32 = lambda buf, o, n: buf[o:o + 4 * n].view(np.float32).astype(np.float64)
    checked = 0
    for i, (name, a) in enumerate(done):
        reads, writes, kv_read, kv_write = regs[i]
        later_w = [w for j in range(i + 1, len(done)) for w in regs[j][1]]
        if any(_overlap(w, o) for w in later_w for o in writes):
            continue                              # its result was overwritten
        sources = []
        for rd in reads:
            before = any(_overlap(w, rd) for j in range(i) for w in regs[j][1])
            after = any(_overlap(w, rd) for j in range(i, len(done)) for w in regs[j][1])
            sources.append(None if before and after else final if before else snap)
        if any(s is None for s in sources):
            continue
        src = {rd: s for rd, s in zip(reads, sources)}
        read = lambda o, n, src=src: f32(src[(o, 4 * n)], o, n)
        kv_src = kv_before
        if kv_read is not None:
            if kv_read not in kv_arrays:
                continue
            earlier, later = (any(j < i for j in writers[kv_read]), any(j > i for j in writers[kv_read]))
            if earlier and later:
                continue                          # it read a cache some writes had reached
            kv_src = {**kv_before, kv_read: kv_arrays[kv_read]} if earlier else kv_before
        if kv_write is not None:
            layer = _ints(a["layer"])
            if np.shares_memory(*kv_arrays[kv_write]) or len(set(rows[kv_write].tolist())) != len(pos) or \
                    any(j != i and _ints(done[j][1]["layer"]) == layer for j in writers[kv_write]):
                continue
        oracle = Oracle(T, pos, tok, kv_src, take, paging)
        try:
            oracle.check(name, a, read, lambda o, n: f32(final, o, n), kv_arrays)
        except CaseFailure:
            raise
        except Exception as e:
            raise CaseFailure(f"add_{name} accepted arguments the reference cannot read "
                              f"({type(e).__name__}: {e})") from None
        checked += 1
    return checked
