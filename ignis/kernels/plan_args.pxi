# ignis/kernels/plan_args.pxi -- argument coercion for the Plan API and the standalone kernels.
#
# Included by ignis/_kernels.pyx. Every public entry point converts its arguments with these
# to Python ints/floats (no int64 wrap-around) and raises ModelError for a wrong type or value,
# before anything reaches an instruction or a nogil call: never a TypeError, an OverflowError
# or an out-of-bounds access.

_MAX_ARENA = 1 << 40          # arena bytes
_MAX_TOKENS = 1 << 20         # tokens per plan step
_MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))
_MAX_WIDTH = 1 << 24          # k, n, dim, n_ff, KV cache positions
_MAX_HEADS = 1 << 16          # n_heads, n_kv_heads, head_dim, layers
_F32_MAX = 3.4028234663852886e38
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _short(v) -> str:
    """A one-line, bounded repr of a (possibly hostile) argument for an error message."""
    try:
        r = repr(v)
    except Exception:
        r = f"<{type(v).__name__}>"
    r = " ".join(r.split())
    return r if len(r) <= 48 else r[:45] + "..."


def _as_int(what, v) -> int:
    """An integer argument (int, numpy integer, anything with __index__ except bool) as a
    Python int; anything else is a ModelError."""
    if isinstance(v, (bool, np.bool_)):
        raise ModelError(f"{what} must be an integer, got bool {v!r}")
    try:
        return operator.index(v)
    except Exception:
        raise ModelError(f"{what} must be an integer, got {type(v).__name__} {_short(v)}") from None


def _int_in(what, v, lo, hi) -> int:
    i = _as_int(what, v)
    if not lo <= i <= hi:
        raise ModelError(f"{what} must be in [{lo}, {hi}], got {i}")
    return i


def _dim(name, key, v, hi=_MAX_WIDTH) -> int:
    """A positive dimension of at most hi."""
    i = _as_int(f"{name}: {key}", v)
    if i < 1:
        raise ModelError(f"{name}: {key} must be positive, got {i}")
    if i > hi:
        raise ModelError(f"{name}: {key} must be at most {hi}, got {i}")
    return i


def _as_real(what, v) -> float:
    """A finite real number (int, float, numpy scalar; not bool, str, None, arrays)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise ModelError(f"{what} must be a number, got {type(v).__name__} {_short(v)}")
    try:
        f = float(v)
    except Exception:
        raise ModelError(f"{what} must be a finite number, got {_short(v)}") from None
    if not math.isfinite(f):
        raise ModelError(f"{what} must be finite, got {f}")
    return f


def _eps(name, v) -> float:
    f = _as_real(f"{name}: eps", v)
    if f < 0 or f > _F32_MAX:
        raise ModelError(f"{name}: eps must be a non-negative float32, got {f}")
    return f


def _theta(name, v) -> float:
    f = _as_real(f"{name}: theta", v)
    if f <= 0:
        raise ModelError(f"{name}: theta must be positive, got {f}")
    return f


def _rope_mode(name, mode) -> int:
    if not isinstance(mode, str) or mode not in _ROPE_MODES:
        raise ModelError(f"{name}: mode must be one of {', '.join(_ROPE_MODES)}, got {_short(mode)}")
    return _ROPE_MODES[mode]


def _wtype(what, t) -> int:
    t = _as_int(what, t)
    if t not in _BLOCK:
        raise ModelError(f"weight type {t} is not supported by the kernels "
                         f"(supported: {', '.join(_TYPE_NAMES.values())})")
    return t


def _numeric(name, x):
    """x as a numpy array of real numbers (not strings, objects, bools or complex)."""
    try:
        a = np.asarray(x)
    except Exception:
        raise ModelError(f"{name}: expected an array of numbers, got {type(x).__name__}") from None
    if a.dtype.kind not in "fiu":
        raise ModelError(f"{name}: expected an array of numbers, got dtype {a.dtype}")
    return a


cdef inline uintptr_t _addr(arr):
    return <uintptr_t>arr.__array_interface__["data"][0]


def _aligned_buffer(Py_ssize_t nbytes, dtype=np.uint8):
    """A zeroed numpy buffer of nbytes whose data is 64-byte aligned."""
    raw = np.zeros(nbytes + 64, dtype=np.uint8)
    shift = (-_addr(raw)) % 64
    return raw[shift:shift + nbytes].view(dtype)


def row_nbytes(wtype, k) -> int:
    """Bytes of one row of k elements of a supported weight type."""
    wtype = _wtype("weight type", wtype)
    k = _as_int("row length", k)
    elems, nbytes = _BLOCK[wtype]
    if k <= 0 or k % elems:
        raise ModelError(f"row length {k} is not a positive multiple of the "
                         f"{_TYPE_NAMES[wtype]} block size {elems}")
    return k // elems * nbytes


def _kv_arrays(kv):
    """(k, v) of a KVCache-like object or a (k, v) tuple: writable C-contiguous float16
    [n_layers, n_ctx, n_kv_heads, head_dim] arrays of one shape."""
    if isinstance(kv, tuple):
        if len(kv) != 2:
            raise ModelError(f"plan.run: kv must be a KVCache or a (k, v) tuple, got a tuple of {len(kv)}")
        kc, vc = kv
    else:
        try:
            kc, vc = kv.k, kv.v
        except Exception:
            raise ModelError(f"plan.run: kv must be a KVCache (an object with .k and .v) or a (k, v) "
                             f"tuple, got {type(kv).__name__}") from None
    out = []
    for name, a in (("k", kc), ("v", vc)):
        if isinstance(a, np.ndarray):
            a = np.asarray(a)
        if not isinstance(a, np.ndarray) or a.dtype != np.float16 or a.ndim != 4 \
                or not a.flags.c_contiguous or not a.flags.writeable:
            raise ModelError(f"plan.run: KV cache {name} must be a writable C-contiguous "
                             f"float16 array [n_layers, n_ctx, n_kv_heads, head_dim]")
        out.append(a)
    kc, vc = out
    if kc.shape != vc.shape:
        raise ModelError(f"plan.run: KV cache k {kc.shape} and v {vc.shape} differ")
    return kc, vc


ctypedef fused span_int:
    int32_t
    int64_t


cdef tuple _span(const span_int[::1] v):
    """(min, max) of a non-empty 1-D C-contiguous int32 or int64 array in one pass: numpy's
    min() and max() go through a Python-level wrapper each, and a decode step checks a dozen
    of them (plan.run's arrays, sample_step's rows)."""
    cdef span_int lo = v[0], hi = v[0], x
    cdef Py_ssize_t i
    for i in range(1, v.shape[0]):
        x = v[i]
        if x < lo:
            lo = x
        elif x > hi:
            hi = x
    return lo, hi


cdef _int32_copy(what, a):
    """A private C-contiguous int32 copy of the 1-D integer array a (non-empty), refused when a
    value does not fit int32: checked before the cast, which would wrap it."""
    if a.dtype != np.int32:
        lo, hi = int(a.min()), int(a.max())
        if lo < _INT32_MIN or hi > _INT32_MAX:
            raise ModelError(f"plan.run: {what} value {lo if lo < _INT32_MIN else hi} does not fit int32")
    return np.array(a, dtype=np.int32, order="C", copy=True)


def _int32_array(what, v, int64_t n):
    """tokens / positions / seqs: a 1-D integer array of n values that fit int32. Always a
    private copy: a run reads it without the GIL, after the checks, so the caller's array must
    not be what it reads."""
    try:
        a = np.asarray(v)
    except Exception:
        raise ModelError(f"plan.run: {what} must be an integer array, got {type(v).__name__}") from None
    if a.dtype.kind not in "iu":
        raise ModelError(f"plan.run: {what} must be integers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ModelError(f"plan.run: {what} must be a 1-D array, got shape {a.shape}")
    if a.shape[0] != n:
        raise ModelError(f"plan.run: {a.shape[0]} {what} for a plan of {n} tokens")
    return _int32_copy(what, a)


cdef _int32_below(a, int64_t limit, message):
    """A private C-contiguous int32 copy of the integer array a (any shape), every value in
    [0, limit), else ModelError(message). A wider dtype is checked before its cast, which
    could wrap a value into the range."""
    if a.dtype != np.int32 and a.size and (int(a.min()) < 0 or int(a.max()) >= limit):
        raise ModelError(message)
    out = np.array(a, dtype=np.int32, order="C", copy=True)
    if out.size:
        lo, hi = _span[int32_t](out.reshape(-1))
        if lo < 0 or hi >= limit:
            raise ModelError(message)
    return out


def _index_array(what, v, int64_t n, int64_t limit):
    """A 1-D integer array of n values in [0, limit), as a private int32 copy."""
    try:
        a = np.asarray(v)
    except Exception:
        raise ModelError(f"plan.run: {what} must be an integer array, got {type(v).__name__}") from None
    if a.dtype.kind not in "iu" or a.ndim != 1 or a.shape[0] != n:
        raise ModelError(f"plan.run: {what} must be {n} integers, got {a.dtype} {a.shape}")
    return _int32_below(a, limit, f"plan.run: {what} holds a value outside [0, {limit})")
