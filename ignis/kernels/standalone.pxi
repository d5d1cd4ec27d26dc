# ignis/kernels/standalone.pxi -- one-op kernels for tests and tools: each validates its
# arrays, builds a one-instruction Plan and runs it (so they run the very kernels a plan runs).
#
# Included by ignis/_kernels.pyx.

def _f32(name, x, ndim):
    a = np.ascontiguousarray(_numeric(name, x), dtype=np.float32)
    if a.ndim != ndim:
        raise ModelError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    if a.size == 0:
        raise ModelError(f"{name}: empty array")
    return a


def quantize_q8_0(x):
    """float32 [T, K] (K a multiple of 32) -> Q8_0 bytes uint8 [T, K/32*34]."""
    check_isa()
    a = _f32("quantize_q8_0", x, 2)
    cdef int64_t T = a.shape[0], K = a.shape[1], t
    if K % 32:
        raise ModelError(f"quantize_q8_0: row length {K} is not a multiple of 32")
    out = np.empty((T, K // 32 * 34), dtype=np.uint8)
    cdef const float[:, ::1] xv = a
    cdef uint8_t[:, ::1] ov = out
    with nogil:
        for t in range(T):
            ignis_quantize_row_q8_0(&xv[t, 0], &ov[t, 0], K)
    return out


def _n_rows(w, wtype, k):
    rb = row_nbytes(wtype, k)
    if not isinstance(w, np.ndarray) or w.nbytes % rb:
        raise ModelError(f"weight must be a numpy array of whole {_TYPE_NAMES[_wtype('weight type', wtype)]} "
                         f"rows of {k} elements")
    return w.nbytes // rb


def matmul(x, w, wtype=T_Q8_0, threads=1, act="q8_0"):
    """x [T, K] @ W.T for W of N rows of K elements of wtype -> float32 [T, N]."""
    a = _f32("matmul x", x, 2)
    T, K = a.shape
    N = _n_rows(w, wtype, K)
    plan = Plan(a.nbytes + T * N * 4, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_matmul(0, a.nbytes, w, T, K, N, wtype, act)
    plan.run()
    return plan.f32(a.nbytes, (T, N)).copy()


def matmul_bias(x, w, b, wtype=T_Q8_0, threads=1):
    a = _f32("matmul_bias x", x, 2)
    T, K = a.shape
    N = _n_rows(w, wtype, K)
    plan = Plan(a.nbytes + T * N * 4, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_matmul_bias(0, a.nbytes, w, b, T, K, N, wtype)
    plan.run()
    return plan.f32(a.nbytes, (T, N)).copy()


def rms_inv(x, eps):
    a = _f32("rms_inv x", x, 2)
    T, D = a.shape
    plan = Plan(a.nbytes + T * 4, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_rms_inv(0, a.nbytes, T, D, eps)
    plan.run()
    return plan.f32(a.nbytes, (T, 1)).copy()


def scale_rows(x, r, g):
    a = _f32("scale_rows x", x, 2)
    T, D = a.shape
    rr = _f32("scale_rows r", r, 2)
    if rr.shape != (T, 1):
        raise ModelError(f"scale_rows: r must be [{T}, 1], got {rr.shape}")
    plan = Plan(2 * a.nbytes + T * 4, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.f32(a.nbytes, (T, 1))[...] = rr
    plan.add_scale_rows(0, a.nbytes, a.nbytes + T * 4, g, T, D)
    plan.run()
    return plan.f32(a.nbytes + T * 4, (T, D)).copy()


def rmsnorm(x, g, eps, threads=1):
    a = _f32("rmsnorm x", x, 2)
    T, D = a.shape
    plan = Plan(2 * a.nbytes, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_rmsnorm(0, a.nbytes, g, T, D, eps)
    plan.run()
    return plan.f32(a.nbytes, (T, D)).copy()


def rope(x, positions, n_heads, head_dim, theta):
    a = _f32("rope x", x, 2)
    T = a.shape[0]
    n_heads = _dim("rope", "n_heads", n_heads, _MAX_HEADS)
    head_dim = _dim("rope", "head_dim", head_dim, _MAX_HEADS)
    if a.shape[1] != n_heads * head_dim:
        raise ModelError(f"rope: x has {a.shape[1]} columns, expected {n_heads}x{head_dim}")
    plan = Plan(2 * a.nbytes, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_rope(0, a.nbytes, n_heads, head_dim, theta)
    plan.run(positions=positions)
    return plan.f32(a.nbytes, a.shape).copy()


def _unary_or_binary(kind, arrays, threads):
    arrs = [np.ascontiguousarray(_numeric(kind, x), dtype=np.float32) for x in arrays]
    shape = arrs[0].shape
    for a in arrs:
        if a.shape != shape or a.size == 0:
            raise ModelError(f"{kind}: operands must be non-empty and of one shape, got "
                             f"{[x.shape for x in arrs]}")
    n = arrs[0].size
    plan = Plan((len(arrs) + 1) * n * 4, threads, 1)
    for i, a in enumerate(arrs):
        plan.f32(i * n * 4, (n,))[...] = a.reshape(-1)
    out = len(arrs) * n * 4
    if kind == "silu":
        plan.add_silu(0, out, n)
    else:
        getattr(plan, "add_" + kind)(0, n * 4, out, n)
    plan.run()
    return plan.f32(out, shape).copy()


def add(a, b, threads=1):
    return _unary_or_binary("add", (a, b), threads)


def mul(a, b, threads=1):
    return _unary_or_binary("mul", (a, b), threads)


def silu(x, threads=1):
    return _unary_or_binary("silu", (x,), threads)


def swiglu(g, u, threads=1):
    return _unary_or_binary("swiglu", (g, u), threads)


def add_bias(y, b):
    a = _f32("add_bias y", y, 2)
    T, N = a.shape
    plan = Plan(2 * a.nbytes, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_add_bias(0, a.nbytes, b, T, N)
    plan.run()
    return plan.f32(a.nbytes, a.shape).copy()


def take_last(x):
    a = _f32("take_last x", x, 2)
    T, D = a.shape
    plan = Plan(a.nbytes + D * 4, 1, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_take_last(0, a.nbytes, T, D)
    plan.run()
    return plan.f32(a.nbytes, (1, D)).copy()


def embed(tokens, w, dim, wtype=T_Q8_0):
    tok = np.asarray(tokens)
    if tok.dtype.kind not in "iu":
        raise ModelError(f"embed: tokens must be integers, got dtype {tok.dtype}")
    tok = tok.reshape(-1)
    if tok.size == 0:
        raise ModelError("embed: no tokens")
    dim = _dim("embed", "dim", dim)
    T = tok.shape[0]
    plan = Plan(T * dim * 4, 1, T)
    plan.add_embed(0, w, dim, wtype)
    plan.run(tokens=tok)
    return plan.f32(0, (T, dim)).copy()


def softmax(x):
    """Row-wise softmax of float32 [T, N] (the attention kernel's softmax)."""
    a = _f32("softmax x", x, 2).copy()
    cdef float[:, ::1] v = a
    cdef int64_t t, T = a.shape[0], N = a.shape[1]
    with nogil:
        for t in range(T):
            softmax_row(&v[t, 0], N)
    return a


def kv_write(k, v, positions, kv, layer, n_kv_heads, head_dim):
    """Store k, v [T, n_kv_heads*head_dim] at cache[layer][positions] (kv updated in place)."""
    ka = _f32("kv_write k", k, 2)
    va = _f32("kv_write v", v, 2)
    T = ka.shape[0]
    n_kv_heads = _dim("kv_write", "n_kv_heads", n_kv_heads, _MAX_HEADS)
    head_dim = _dim("kv_write", "head_dim", head_dim, _MAX_HEADS)
    if ka.shape != (T, n_kv_heads * head_dim) or va.shape != ka.shape:
        raise ModelError(f"kv_write: k {ka.shape} / v {va.shape}, expected [{T}, {n_kv_heads * head_dim}]")
    plan = Plan(2 * ka.nbytes, 1, T)
    plan.f32(0, ka.shape)[...] = ka
    plan.f32(ka.nbytes, va.shape)[...] = va
    plan.add_kv_write(0, ka.nbytes, layer, n_kv_heads, head_dim)
    plan.run(positions=positions, kv=kv)


def attention(q, positions, kv, layer, n_heads, n_kv_heads, head_dim, threads=1):
    """Causal GQA attention of q [T, n_heads*head_dim] over kv[layer] positions 0..pos[t]."""
    a = _f32("attention q", q, 2)
    T = a.shape[0]
    n_heads = _dim("attention", "n_heads", n_heads, _MAX_HEADS)
    head_dim = _dim("attention", "head_dim", head_dim, _MAX_HEADS)
    if a.shape[1] != n_heads * head_dim:
        raise ModelError(f"attention: q has {a.shape[1]} columns, expected {n_heads}x{head_dim}")
    plan = Plan(2 * a.nbytes, threads, T)
    plan.f32(0, a.shape)[...] = a
    plan.add_attention(0, a.nbytes, layer, n_heads, n_kv_heads, head_dim)
    plan.run(positions=positions, kv=kv)
    return plan.f32(a.nbytes, a.shape).copy()
