# ignis/kernels/plan.pxi -- the Python side: argument checking and the Plan class (building
# instructions, validating every argument, scratch buffers, run), the KV cache arrays.
#
# Included by ignis/_kernels.pyx. The one place where anything is checked: every public
# entry point converts its arguments to Python ints/floats (no int64 wrap-around) and
# raises ModelError for a wrong type or value, before anything reaches an instruction or
# a nogil call: never a TypeError, an OverflowError or an out-of-bounds access.

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


_FEATURE_BITS = {"avx2": IGNIS_F_AVX2, "avxvnni": IGNIS_F_AVXVNNI, "avx512": IGNIS_F_AVX512,
                 "avx512bf16": IGNIS_F_AVX512BF16, "amx (cpuid)": IGNIS_F_AMX_CPUID, "amx (os)": IGNIS_F_AMX_OS,
                 "neon": IGNIS_F_NEON, "dotprod": IGNIS_F_DOTPROD, "i8mm": IGNIS_F_I8MM}


def cpu_features() -> list:
    """What CPUID/HWCAP report *and* the OS has enabled (XCR0), as names: avx2 (with FMA and
    F16C), avxvnni, avx512 (F+BW+VL+DQ+VNNI), avx512bf16, neon, dotprod, i8mm; "amx (cpuid)"
    when CPUID advertises AMX tiles and "amx (os)" when the OS enabled their state too (ignis
    never executes AMX)."""
    cdef unsigned f = ignis_cpu_features()
    return [name for name, bit in _FEATURE_BITS.items() if f & bit]


def isa_levels() -> list:
    """Every kernel level this build has, lowest first, as (name, runs on this CPU)."""
    cdef unsigned f = ignis_cpu_features()
    return [(ignis_isas[i].name.decode(), (ignis_isas[i].needs & f) == ignis_isas[i].needs)
            for i in range(IGNIS_N_ISAS)]


def best_isa() -> str:
    """The highest level this build has and this CPU runs."""
    return ignis_isas[ignis_best_isa()].name.decode()


def isa() -> str:
    """The level the kernels use now."""
    return ignis_isa_name().decode()


def use_isa(name) -> None:
    """Switch every kernel to level `name` (see isa_levels()). Not while a plan runs: the
    level is process-wide. A level this build lacks or this CPU cannot run is an ISAError."""
    levels = [n for n, _ in isa_levels()]
    if not isinstance(name, str) or name not in levels:
        raise ISAError(f"unknown kernel level {name!r}: this build has {', '.join(levels)}")
    if ignis_use_isa(levels.index(name)) != 0:
        runnable = [n for n, ok in isa_levels() if ok]
        raise ISAError(f"kernel level {name!r} cannot run on this CPU (it runs {', '.join(runnable)})")


def openmp_threads() -> int:
    """OpenMP's default thread count (omp_get_max_threads); 0 when built without OpenMP."""
    return ignis_omp_max_threads()


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


@cython.final
cdef class Plan:
    """A flat instruction list over one activation arena, run in one nogil call.
    See the module docstring for the API and its contracts."""
    cdef Instr *ins
    cdef int64_t n_ins
    cdef int64_t cap
    cdef RopeSlot slots[16]
    cdef int64_t n_slots
    cdef readonly int64_t arena_bytes
    cdef readonly int n_threads
    cdef readonly int64_t n_tokens
    cdef readonly object arena
    cdef object _refs
    cdef object _text
    cdef object _qbuf
    cdef object _fbuf
    cdef object _rope
    cdef object _att
    cdef object _counters
    cdef int64_t _qbuf_bytes
    cdef int64_t _fbuf_floats
    cdef int64_t _att_group
    cdef object _qcache        # (x offset, rows, k) of the x whose Q8_0 copy is in scratch
    cdef object _q16cache      # the same for the Q16 scratch
    cdef object _q16buf
    cdef int64_t _q16_bytes
    cdef int64_t _vocab        # smallest embed vocabulary (tokens must be below), -1: no embed
    cdef bint _needs_pos
    cdef bint _writes_kv       # kv_write / qkv_rope_kv: no two tokens of a run may write one row
    cdef int64_t _take_n       # take_rows: rows the run's `rows` gives (-1: no take_rows)
    cdef int64_t _take_from    # take_rows: rows of its x (every index must be below)
    cdef bint _running
    cdef bint _building        # an add_* call is between its checks and its commit
    cdef int _kv_layers        # 1 + the largest layer used, 0: no kv
    cdef int _kv_layers1       # the same in KV pool 1 (kv_local)
    cdef int _kv_heads
    cdef int _kv_hd

    def __cinit__(self):
        self.ins = NULL
        self.n_ins = 0
        self.cap = 0
        self._running = False
        self._building = False

    def __dealloc__(self):
        PyMem_Free(self.ins)

    def __init__(self, arena_bytes, n_threads, n_tokens):
        check_isa()
        if self.arena is not None or self._running or self._building:
            raise ModelError("plan: a Plan is initialised once (build a new Plan instead)")
        arena_bytes = _as_int("plan arena size", arena_bytes)
        n_threads = _as_int("plan thread count", n_threads)
        n_tokens = _as_int("plan token count", n_tokens)
        if arena_bytes <= 0:
            raise ModelError(f"plan arena size must be positive, got {arena_bytes}")
        if arena_bytes > _MAX_ARENA:
            raise ModelError(f"plan arena size {arena_bytes} is more than {_MAX_ARENA} bytes")
        if n_threads < 1:
            raise ModelError(f"plan thread count must be at least 1, got {n_threads}")
        if n_threads > _MAX_THREADS:
            raise ModelError(f"plan thread count {n_threads} is more than {_MAX_THREADS}")
        if n_tokens < 1:
            raise ModelError(f"plan token count must be at least 1, got {n_tokens}")
        if n_tokens > _MAX_TOKENS:
            raise ModelError(f"plan token count {n_tokens} is more than {_MAX_TOKENS}")
        try:
            arena = _aligned_buffer(arena_bytes)
        except (MemoryError, ValueError, OverflowError):
            raise ModelError(f"plan: cannot allocate an arena of {arena_bytes} bytes") from None
        self.arena_bytes = arena_bytes
        self.n_threads = n_threads
        self.n_tokens = n_tokens
        self._refs = []
        self._text = []
        self._qbuf = self._fbuf = self._rope = self._att = self._counters = None
        self._qbuf_bytes = 0
        self._fbuf_floats = 0
        self._att_group = 0
        self._qcache = None
        self._q16cache = None
        self._q16buf = None
        self._q16_bytes = 0
        self._vocab = -1
        self._needs_pos = False
        self._take_n = -1
        self._take_from = 0
        self._writes_kv = False
        self._kv_layers = 0
        self._kv_layers1 = 0
        self._kv_heads = 0
        self._kv_hd = 0
        self.n_slots = 0
        self.arena = arena

    # -- inspection ---------------------------------------------------------

    @property
    def n_instructions(self) -> int:
        return self.n_ins

    def describe(self) -> list:
        """One line per lowered instruction."""
        return list(self._text) if self._text is not None else []

    def f32(self, offset, shape):
        """A float32 view of the arena region starting at byte `offset`."""
        if self.arena is None:
            raise ModelError("view: the plan is not initialised")
        offset = _as_int("view offset", offset)
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        dims = tuple(_dim("view", "shape entry", s, self.arena_bytes) for s in dims)
        n = 1
        for s in dims:
            n *= s
        self._region("view", offset, n * 4)
        return self.arena[offset:offset + n * 4].view(np.float32).reshape(dims)

    @property
    def scratch_bytes(self) -> int:
        """Scratch the plan owns besides the arena (attention scratch depends on n_ctx; not counted)."""
        return self._qbuf_bytes + self._q16_bytes + self._fbuf_floats * 4 + self._rope_floats() * 4

    # -- validation helpers (Python ints throughout) ------------------------

    cdef int64_t _rope_floats(self):
        cdef int64_t total = 0, i
        for i in range(self.n_slots):
            total += self.n_tokens * self.slots[i].head_dim
        return total

    cdef int _enter(self, str name) except -1:
        """Start an add_*: the plan is initialised, not running and not being extended
        (an argument's __index__ or __array__ may run Python code, another thread may call run)."""
        if self.arena is None:
            raise ModelError(f"{name}: the plan is not initialised")
        if self._running:
            raise ModelError(f"{name}: cannot extend a plan while it runs")
        if self._building:
            raise ModelError(f"{name}: another add_* call on this plan is in progress")
        self._building = True
        return 0

    def _region(self, name, offset, nbytes):
        if offset < 0 or offset % 4:
            raise ModelError(f"{name}: arena offset {offset} must be a non-negative multiple of 4")
        if nbytes <= 0 or offset + nbytes > self.arena_bytes:
            raise ModelError(f"{name}: region [{offset}, {offset + nbytes}) does not fit the "
                             f"{self.arena_bytes}-byte arena")
        return offset // 4

    def _io(self, name, ins_list, outs, may_alias=()):
        """Check regions: ins/outs are (offset, nbytes); an output may equal (same offset and
        size) an input listed in may_alias, otherwise it must not overlap any input."""
        for oi, (o, on) in enumerate(outs):
            for ii, (i, inn) in enumerate(ins_list):
                if o < i + inn and i < o + on:
                    if ii in may_alias and o == i and on == inn:
                        continue
                    raise ModelError(f"{name}: output region [{o}, {o + on}) overlaps input region "
                                     f"[{i}, {i + inn})")

    cdef _wrote(self, offset, nbytes):
        if self._qcache is not None:
            x, rows, k = self._qcache
            if offset < x + rows * k * 4 and x < offset + nbytes:
                self._qcache = None
        if self._q16cache is not None:
            x, rows, k = self._q16cache
            if offset < x + rows * k * 4 and x < offset + nbytes:
                self._q16cache = None

    def _weight(self, name, w, wtype, n, k):
        """Validate a weight given as one array or a list of up to 3 row-blocks (parts, e.g.
        [Wq, Wk, Wv]) with one type or one type per part; keep references. Returns a list of
        (address, type, row bytes, rows) whose rows add up to n."""
        arrays = list(w) if isinstance(w, (list, tuple)) else [w]
        types = list(wtype) if isinstance(wtype, (list, tuple)) else [wtype] * len(arrays)
        if not 1 <= len(arrays) <= 3 or len(types) != len(arrays):
            raise ModelError(f"{name}: weight must be an array or a list of 1 to 3 arrays with one "
                             f"type each, got {len(arrays)} arrays and {len(types)} types")
        parts = []
        bases = []
        for a, t in zip(arrays, types):
            t = _wtype(f"{name}: weight type", t)
            rb = row_nbytes(t, k)
            if t not in _FLOAT_WTYPES and k % 32:
                raise ModelError(f"{name}: k={k} must be a multiple of 32 (Q8_0 activations)")
            if not isinstance(a, np.ndarray):
                raise ModelError(f"{name}: weight must be a numpy array, got {type(a).__name__}")
            a = np.asarray(a)      # an ndarray subclass: its buffer as numpy sees it, not its claims
            if a.ndim == 0:
                raise ModelError(f"{name}: weight must be an array of rows, got a 0-d array")
            if not a.flags.c_contiguous:
                raise ModelError(f"{name}: weight array must be C-contiguous (weights are never copied)")
            if t == T_F32:
                dtype_ok = a.dtype == np.float32
            elif t == T_F16:
                dtype_ok = a.dtype == np.float16 or a.dtype == np.uint16
            elif t == T_BF16:
                dtype_ok = a.dtype == np.uint16
            else:
                dtype_ok = a.dtype == np.uint8 or a.dtype == np.int8
            if not dtype_ok:
                raise ModelError(f"{name}: a {_TYPE_NAMES[t]} weight cannot be a {a.dtype} array")
            if a.nbytes == 0 or a.nbytes % rb:
                raise ModelError(f"{name}: {_TYPE_NAMES[t]} weight of {a.nbytes} bytes is not a whole "
                                 f"number of rows of {k} ({rb} bytes each)")
            parts.append((_addr(a), t, rb, a.nbytes // rb))
            bases.append(a)
        total = sum(part[3] for part in parts)
        if total != n:
            desc = " + ".join(f"{part[3]}" for part in parts)
            raise ModelError(f"{name}: weight has {desc} rows of {k}, expected {n} rows")
        self._refs.extend(bases)
        return parts

    cdef _set_parts(self, Instr *p, list parts):
        cdef int i
        p.n_parts = len(parts)
        p.pstart[0] = 0
        for i in range(len(parts)):
            addr, t, rb, rows = parts[i]
            p.pw[i] = <const uint8_t *><uintptr_t>addr
            p.ptype[i] = t
            p.prb[i] = rb
            p.pstart[i + 1] = p.pstart[i] + rows
        for i in range(len(parts), 3):
            p.pstart[i + 1] = p.pstart[i]

    @staticmethod
    def _type_label(parts):
        names = [_TYPE_NAMES[part[1]] for part in parts]
        return names[0] if len(set(names)) == 1 else "+".join(names)

    def _vector(self, name, v, n):
        if v is None:
            raise ModelError(f"{name}: vector is missing")
        a = _numeric(name, v)
        arr = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
        if arr.shape[0] != n:
            raise ModelError(f"{name}: vector has {arr.shape[0]} values, expected {n}")
        self._refs.append(arr)
        return arr

    def _rows(self, name, rows):
        rows = _as_int(f"{name}: rows", rows)
        if rows < 1 or rows > self.n_tokens:
            raise ModelError(f"{name}: rows must be in [1, {self.n_tokens}], got {rows}")
        return rows

    cdef Instr *_push(self, int op, str text) except NULL:
        cdef Instr *grown
        if self._running:
            raise ModelError("plan: cannot extend a plan while it runs")
        if self.n_ins == self.cap:
            newcap = max(16, self.cap * 2)
            grown = <Instr *>PyMem_Realloc(self.ins, newcap * sizeof(Instr))
            if grown == NULL:
                raise MemoryError()
            self.ins = grown
            self.cap = newcap
        cdef Instr *p = &self.ins[self.n_ins]
        memset(p, 0, sizeof(Instr))
        p.op = op
        p.x = -1
        p.x2 = -1
        p.out = -1
        p.rope_slot = -1
        self.n_ins += 1
        self._text.append(text)
        return p

    def _rope_check(self, name, head_dim, theta):
        """A rope setting can get a slot (an existing one or one of the 16)."""
        cdef int64_t i
        for i in range(self.n_slots):
            if self.slots[i].head_dim == head_dim and self.slots[i].theta == theta:
                return
        if self.n_slots == 16:
            raise ModelError(f"{name}: too many distinct (head_dim, theta) rope settings in one plan (max 16)")

    cdef int _rope_slot(self, int head_dim, double theta) except -1:
        cdef int64_t i
        for i in range(self.n_slots):
            if self.slots[i].head_dim == head_dim and self.slots[i].theta == theta:
                return <int>i
        if self.n_slots == 16:
            raise ModelError("plan: too many distinct (head_dim, theta) rope settings (max 16)")
        self.slots[self.n_slots].head_dim = head_dim
        self.slots[self.n_slots].theta = theta
        self.slots[self.n_slots].offset = self._rope_floats()
        self.n_slots += 1
        self._needs_pos = True
        return <int>(self.n_slots - 1)

    def _layer(self, name, layer):
        layer = _as_int(f"{name}: layer", layer)
        if layer < 0:
            raise ModelError(f"{name}: layer must be non-negative, got {layer}")
        if layer >= _MAX_HEADS:
            raise ModelError(f"{name}: layer must be below {_MAX_HEADS}, got {layer}")
        return layer

    def _kv_check(self, name, n_kv_heads, head_dim):
        if self._kv_heads and (self._kv_heads != n_kv_heads or self._kv_hd != head_dim):
            raise ModelError(f"{name}: KV geometry {n_kv_heads}x{head_dim} differs from the plan's "
                             f"{self._kv_heads}x{self._kv_hd}")

    cdef _kv_commit(self, layer, n_kv_heads, head_dim, pool=0):
        self._kv_heads, self._kv_hd = n_kv_heads, head_dim
        if pool:
            self._kv_layers1 = max(self._kv_layers1, layer + 1)
        else:
            self._kv_layers = max(self._kv_layers, layer + 1)
        self._needs_pos = True

    def _head_dims(self, name, n_heads, head_dim, n_kv_heads=1):
        n_heads = _dim(name, "n_heads", n_heads, _MAX_HEADS)
        head_dim = _dim(name, "head_dim", head_dim, _MAX_HEADS)
        n_kv_heads = _dim(name, "n_kv_heads", n_kv_heads, _MAX_HEADS)
        if head_dim % 2:
            raise ModelError(f"{name}: head_dim must be even, got {head_dim}")
        if n_heads % n_kv_heads:
            raise ModelError(f"{name}: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        return n_heads, head_dim, n_kv_heads

    cdef _quantize_input(self, int64_t x, int64_t rows, int64_t k, list parts):
        """Emit a quantize instruction for x unless its Q8_0 copy is already in scratch (or no
        part of the weight is quantized)."""
        cdef Instr *p
        if all(part[1] in _FLOAT_WTYPES for part in parts):
            return
        if self._qcache == (x, rows, k):
            return
        self._qbuf_bytes = max(self._qbuf_bytes, rows * (k // 32) * 34)
        self._qcache = (x, rows, k)
        if self.n_ins:      # the producer of x is the previous instruction: let it quantize
            p = &self.ins[self.n_ins - 1]
            whole = p.out == x // 4 and p.rows == rows
            if whole and p.op == OP_RMSNORM and p.k == k or \
                    whole and p.op == OP_ATTENTION and <int64_t>p.n_heads * p.head_dim == k \
                    and (p.n_heads // p.n_kv_heads) * p.head_dim % 32 == 0:
                p.quantize_out = 1
                p.xq_row_bytes = (k // 32) * 34
                self._text[len(self._text) - 1] += " (+ quantize to Q8_0 scratch)"
                return
        p = self._push(OP_QUANTIZE, f"quantize x@{x} [{rows},{k}] -> Q8_0 scratch")
        p.x = x // 4
        p.rows = rows
        p.k = k

    cdef _quantize16_input(self, int64_t x, int64_t rows, int64_t k):
        cdef Instr *p
        if self._q16cache == (x, rows, k):
            return
        p = self._push(OP_QUANTIZE16, f"quantize x@{x} [{rows},{k}] -> Q16 scratch")
        p.x = x // 4
        p.rows = rows
        p.k = k
        self._q16_bytes = max(self._q16_bytes, rows * (k // 32) * 68)
        self._q16cache = (x, rows, k)

    cdef _matmul_core(self, int64_t x, int64_t out, list parts, int64_t rows, int64_t k,
                      int64_t n_out, int epi, object vec, int64_t res, int64_t n_split, str text,
                      bint act16=False):
        if act16:
            self._quantize16_input(x, rows, k)
        else:
            self._quantize_input(x, rows, k, parts)
        cdef Instr *p = self._push(OP_MATMUL, text)
        p.act16 = act16
        p.epi = epi
        p.rows = rows
        p.k = k
        p.n = n_out
        p.n_split = n_split
        p.x = x // 4
        p.x2 = res // 4 if res >= 0 else -1
        p.out = out // 4
        self._set_parts(p, parts)
        p.xq_row_bytes = (k // 32) * 34
        if vec is not None:
            p.vec = <const float *><uintptr_t>_addr(vec)
        else:
            p.vec = NULL

    def _matmul_args(self, name, x, out, rows, k, n, key="n"):
        """The common arguments of the matmul family, converted and bounded."""
        x = _as_int(f"{name}: x offset", x)
        out = _as_int(f"{name}: out offset", out)
        rows = self._rows(name, rows)
        k = _dim(name, "k", k)
        n = _dim(name, key, n)
        return x, out, rows, k, n

    # -- primitive ops ------------------------------------------------------

    def add_embed(self, out, w, dim, wtype=T_Q8_0):
        """out[T, dim] = row tokens[t] of w (dequantized)."""
        cdef Instr *p
        self._enter("embed")
        try:
            out = _as_int("embed: out offset", out)
            dim = _dim("embed", "dim", dim)
            wtype = _wtype("embed: weight type", wtype)
            rb = row_nbytes(wtype, dim)
            if not isinstance(w, np.ndarray) or w.nbytes % rb or w.nbytes == 0:
                raise ModelError(f"embed: weight must be a numpy array of whole {_TYPE_NAMES[wtype]} rows "
                                 f"of {dim} ({rb} bytes each)")
            vocab = np.asarray(w).nbytes // rb
            nb = self.n_tokens * dim * 4
            o = self._region("embed out", out, nb)
            parts = self._weight("embed", w, wtype, vocab, dim)
            self._wrote(out, nb)
            p = self._push(OP_EMBED, f"embed {_TYPE_NAMES[wtype]} [{vocab},{dim}] -> @{out}")
            p.rows = self.n_tokens
            p.k = dim
            p.out = o
            self._set_parts(p, parts)
            self._vocab = vocab if self._vocab < 0 else min(self._vocab, vocab)
        finally:
            self._building = False

    def add_rms_inv(self, x, out, rows, dim, eps):
        """out[rows, 1] = 1 / sqrt(sum x^2 / dim + eps)"""
        cdef Instr *p
        self._enter("rms_inv")
        try:
            x = _as_int("rms_inv: x offset", x)
            out = _as_int("rms_inv: out offset", out)
            rows = self._rows("rms_inv", rows)
            dim = _dim("rms_inv", "dim", dim)
            eps = _eps("rms_inv", eps)
            xi = self._region("rms_inv x", x, rows * dim * 4)
            oi = self._region("rms_inv out", out, rows * 4)
            self._io("rms_inv", [(x, rows * dim * 4)], [(out, rows * 4)])
            self._wrote(out, rows * 4)
            p = self._push(OP_RMS_INV, f"rms_inv @{x} [{rows},{dim}] eps={float(np.float32(eps))} -> @{out}")
            p.rows, p.k, p.eps, p.x, p.out = rows, dim, eps, xi, oi
        finally:
            self._building = False

    def add_scale_rows(self, x, r, out, g, rows, dim):
        """out = (x * r[t]) * g"""
        cdef Instr *p
        self._enter("scale_rows")
        try:
            x = _as_int("scale_rows: x offset", x)
            r = _as_int("scale_rows: r offset", r)
            out = _as_int("scale_rows: out offset", out)
            rows = self._rows("scale_rows", rows)
            dim = _dim("scale_rows", "dim", dim)
            gv = self._vector("scale_rows g", g, dim)
            xi = self._region("scale_rows x", x, rows * dim * 4)
            ri = self._region("scale_rows r", r, rows * 4)
            oi = self._region("scale_rows out", out, rows * dim * 4)
            self._io("scale_rows", [(x, rows * dim * 4), (r, rows * 4)], [(out, rows * dim * 4)], (0,))
            self._wrote(out, rows * dim * 4)
            p = self._push(OP_SCALE_ROWS, f"scale_rows @{x} * @{r} * g [{rows},{dim}] -> @{out}")
            p.rows, p.k, p.x, p.x2, p.out = rows, dim, xi, ri, oi
            p.vec = <const float *><uintptr_t>_addr(gv)
        finally:
            self._building = False

    def add_matmul(self, x, out, w, rows, k, n, wtype=T_Q8_0, act="q8_0"):
        """out[rows, n] = x[rows, k] @ w.T. act="q16" quantizes x to 16-bit blocks instead of
        Q8_0 (Q8_0, F32 and F16 weights): about 256x less activation rounding, for the matmul
        whose accuracy matters most (the output projection: top-1 agreement)."""
        self._enter("matmul")
        try:
            x, out, rows, k, n = self._matmul_args("matmul", x, out, rows, k, n)
            if not (isinstance(act, str) and act in ("q8_0", "q16")):
                raise ModelError(f"matmul: act must be 'q8_0' or 'q16', got {_short(act)}")
            self._region("matmul x", x, rows * k * 4)
            self._region("matmul out", out, rows * n * 4)
            parts = self._weight("matmul", w, wtype, n, k)
            act16 = act == "q16" and any(part[1] not in _FLOAT_WTYPES for part in parts)
            if act16 and any(part[1] not in _FLOAT_WTYPES + (T_Q8_0,) for part in parts):
                raise ModelError(f"matmul: act='q16' needs Q8_0 (or F32/F16) weights, got "
                                 f"{self._type_label(parts)}")
            self._io("matmul", [(x, rows * k * 4)], [(out, rows * n * 4)])
            self._wrote(out, rows * n * 4)
            self._matmul_core(x, out, parts, rows, k, n, EPI_STORE, None, -1, n,
                              f"matmul @{x} [{rows},{k}] x {self._type_label(parts)} [{n},{k}]"
                              f"{' (q16 activations)' if act16 else ''} -> @{out}", act16)
        finally:
            self._building = False

    def add_add_bias(self, y, out, b, rows, n):
        """out = y + b"""
        cdef Instr *p
        self._enter("add_bias")
        try:
            y = _as_int("add_bias: y offset", y)
            out = _as_int("add_bias: out offset", out)
            rows = self._rows("add_bias", rows)
            n = _dim("add_bias", "n", n)
            bv = self._vector("add_bias b", b, n)
            yi = self._region("add_bias y", y, rows * n * 4)
            oi = self._region("add_bias out", out, rows * n * 4)
            self._io("add_bias", [(y, rows * n * 4)], [(out, rows * n * 4)], (0,))
            self._wrote(out, rows * n * 4)
            p = self._push(OP_ADD_BIAS, f"add_bias @{y} [{rows},{n}] -> @{out}")
            p.rows, p.n, p.x, p.out = rows, n, yi, oi
            p.vec = <const float *><uintptr_t>_addr(bv)
        finally:
            self._building = False

    def add_rope(self, x, out, n_heads, head_dim, theta, mode="neox"):
        """Rotation of each head of x [T, n_heads*head_dim] at the step's positions (mode
        "neox": pairs (i, i + hd/2); "normal": adjacent pairs)."""
        cdef Instr *p
        self._enter("rope")
        try:
            rmode = _rope_mode("rope", mode)
            x = _as_int("rope: x offset", x)
            out = _as_int("rope: out offset", out)
            n_heads, head_dim, _ = self._head_dims("rope", n_heads, head_dim)
            theta = _theta("rope", theta)
            nb = self.n_tokens * n_heads * head_dim * 4
            xi = self._region("rope x", x, nb)
            oi = self._region("rope out", out, nb)
            self._io("rope", [(x, nb)], [(out, nb)], (0,))
            self._rope_check("rope", head_dim, theta)
            self._wrote(out, nb)
            slot = self._rope_slot(head_dim, theta)
            p = self._push(OP_ROPE, f"rope @{x} [{self.n_tokens},{n_heads}x{head_dim}] "
                                    f"theta={theta} -> @{out}")
            p.rows, p.n_heads, p.head_dim, p.x, p.out, p.rope_slot = self.n_tokens, n_heads, head_dim, xi, oi, slot
            p.rope_mode = rmode
        finally:
            self._building = False

    def add_kv_write(self, k, v, layer, n_kv_heads, head_dim, pool=0):
        """cache.k/v[layer][pos[t]] = f16(k[t]), f16(v[t]) (pool 1: the kv_local cache)"""
        cdef Instr *p
        self._enter("kv_write")
        try:
            pool = _int_in("kv_write: pool", pool, 0, 1)
            k = _as_int("kv_write: k offset", k)
            v = _as_int("kv_write: v offset", v)
            n_kv_heads, head_dim, _ = self._head_dims("kv_write", n_kv_heads, head_dim)
            layer = self._layer("kv_write", layer)
            self._kv_check("kv_write", n_kv_heads, head_dim)
            nb = self.n_tokens * n_kv_heads * head_dim * 4
            ki = self._region("kv_write k", k, nb)
            vi = self._region("kv_write v", v, nb)
            self._kv_commit(layer, n_kv_heads, head_dim, pool)
            self._writes_kv = True
            p = self._push(OP_KV_WRITE, f"kv_write @{k} @{v} -> {'local ' if pool else ''}cache[{layer}]")
            p.rows, p.n_kv_heads, p.head_dim, p.layer, p.x, p.x2 = self.n_tokens, n_kv_heads, head_dim, layer, ki, vi
            p.pool = pool
        finally:
            self._building = False

    def add_attention(self, q, out, layer, n_heads, n_kv_heads, head_dim, window=0, pool=0):
        """Causal GQA attention of q [T, n_heads*head_dim] over cache[layer] positions 0..pos[t]
        (window > 0: only the last `window` of them, pos[t] - window < p <= pos[t])."""
        cdef Instr *p
        self._enter("attention")
        try:
            window = _int_in("attention: window", window, 0, _MAX_WIDTH)
            pool = _int_in("attention: pool", pool, 0, 1)
            q = _as_int("attention: q offset", q)
            out = _as_int("attention: out offset", out)
            n_heads, head_dim, n_kv_heads = self._head_dims("attention", n_heads, head_dim, n_kv_heads)
            layer = self._layer("attention", layer)
            self._kv_check("attention", n_kv_heads, head_dim)
            nb = self.n_tokens * n_heads * head_dim * 4
            qi = self._region("attention q", q, nb)
            oi = self._region("attention out", out, nb)
            self._io("attention", [(q, nb)], [(out, nb)], (0,))
            self._kv_commit(layer, n_kv_heads, head_dim, pool)
            self._wrote(out, nb)
            self._att_group = max(self._att_group, n_heads // n_kv_heads)
            p = self._push(OP_ATTENTION, f"attention @{q} {'local ' if pool else ''}cache[{layer}] "
                                         f"{n_heads}/{n_kv_heads} heads x {head_dim}"
                                         f"{f' window {window}' if window else ''} -> @{out}")
            p.rows, p.n_heads, p.n_kv_heads, p.head_dim, p.layer = self.n_tokens, n_heads, n_kv_heads, head_dim, layer
            p.x, p.out, p.window, p.pool = qi, oi, window, pool
        finally:
            self._building = False

    cdef _elementwise(self, int op, str name, a, b, out, n, float factor=0):
        """b is unused by the unary ops (silu, gelu, scale): every other op requires it."""
        cdef Instr *p
        cdef bint binary = op != OP_SILU and op != OP_GELU and op != OP_SCALE
        self._enter(name)
        try:
            a = _as_int(f"{name}: {'a' if binary else 'x'} offset", a)
            if binary:
                b = _as_int(f"{name}: b offset", b)
            out = _as_int(f"{name}: out offset", out)
            n = _dim(name, "n", n, max(1, self.arena_bytes // 4))
            ai = self._region(f"{name} a", a, n * 4)
            bi = self._region(f"{name} b", b, n * 4) if binary else -1
            oi = self._region(f"{name} out", out, n * 4)
            ins = [(a, n * 4)] + ([(b, n * 4)] if binary else [])
            self._io(name, ins, [(out, n * 4)], (0, 1))
            self._wrote(out, n * 4)
            srcs = f"@{a}" + (f", @{b}" if binary else "")
            p = self._push(op, f"{name} {srcs} [{n}]{f' x {factor}' if op == OP_SCALE else ''} -> @{out}")
            p.n, p.x, p.x2, p.out, p.factor = n, ai, bi, oi, factor
        finally:
            self._building = False

    def add_add(self, a, b, out, n):
        """out = a + b over n floats"""
        self._elementwise(OP_ADD, "add", a, b, out, n)

    def add_mul(self, a, b, out, n):
        """out = a * b over n floats"""
        self._elementwise(OP_MUL, "mul", a, b, out, n)

    def add_silu(self, x, out, n):
        """out = x / (1 + exp(-x)) over n floats"""
        self._elementwise(OP_SILU, "silu", x, None, out, n)

    def add_gelu(self, x, out, n):
        """out = gelu(x) (tanh approximation) over n floats"""
        self._elementwise(OP_GELU, "gelu", x, None, out, n)

    def add_scale(self, x, out, n, factor):
        """out = x * factor (a float32 constant) over n floats"""
        factor = _as_real("scale: factor", factor)
        if abs(factor) > _F32_MAX:
            raise ModelError(f"scale: factor {factor} does not fit float32")
        self._elementwise(OP_SCALE, "scale", x, None, out, n, factor)

    def add_head_rmsnorm(self, x, out, g, rows, n_heads, head_dim, eps):
        """rmsnorm of every head of x [rows, n_heads*head_dim] with one gain g [head_dim]"""
        cdef Instr *p
        self._enter("head_rmsnorm")
        try:
            x = _as_int("head_rmsnorm: x offset", x)
            out = _as_int("head_rmsnorm: out offset", out)
            rows = self._rows("head_rmsnorm", rows)
            n_heads = _dim("head_rmsnorm", "n_heads", n_heads, _MAX_HEADS)
            head_dim = _dim("head_rmsnorm", "head_dim", head_dim, _MAX_HEADS)
            eps = _eps("head_rmsnorm", eps)
            gv = self._vector("head_rmsnorm g", g, head_dim)
            nb = rows * n_heads * head_dim * 4
            xi = self._region("head_rmsnorm x", x, nb)
            oi = self._region("head_rmsnorm out", out, nb)
            self._io("head_rmsnorm", [(x, nb)], [(out, nb)], (0,))
            self._wrote(out, nb)
            p = self._push(OP_HEAD_RMSNORM, f"head_rmsnorm @{x} [{rows},{n_heads}x{head_dim}] "
                                            f"eps={float(np.float32(eps))} -> @{out}")
            p.rows, p.n_heads, p.head_dim, p.eps, p.x, p.out = rows, n_heads, head_dim, eps, xi, oi
            p.vec = <const float *><uintptr_t>_addr(gv)
        finally:
            self._building = False

    def add_take_last(self, x, out, rows, dim):
        """out[1, dim] = x[rows - 1]"""
        cdef Instr *p
        self._enter("take_last")
        try:
            x = _as_int("take_last: x offset", x)
            out = _as_int("take_last: out offset", out)
            rows = self._rows("take_last", rows)
            dim = _dim("take_last", "dim", dim)
            xi = self._region("take_last x", x, rows * dim * 4)
            oi = self._region("take_last out", out, dim * 4)
            if out != x:
                self._io("take_last", [(x, rows * dim * 4)], [(out, dim * 4)])
            self._wrote(out, dim * 4)
            p = self._push(OP_TAKE_LAST, f"take_last @{x} [{rows},{dim}] -> @{out}")
            p.rows, p.k, p.x, p.out = rows, dim, xi, oi
        finally:
            self._building = False

    def add_take_rows(self, x, out, rows, dim, n_out):
        """out[n_out, dim] = x[rows[i]] for the run's `rows` (int32 [n_out], each in [0, rows))."""
        cdef Instr *p
        self._enter("take_rows")
        try:
            x = _as_int("take_rows: x offset", x)
            out = _as_int("take_rows: out offset", out)
            rows = self._rows("take_rows", rows)
            dim = _dim("take_rows", "dim", dim)
            n_out = self._rows("take_rows n_out", n_out)
            if self._take_n >= 0:
                raise ModelError("take_rows: a plan takes rows once (one `rows` input per run)")
            xi = self._region("take_rows x", x, rows * dim * 4)
            oi = self._region("take_rows out", out, n_out * dim * 4)
            self._io("take_rows", [(x, rows * dim * 4)], [(out, n_out * dim * 4)])
            self._wrote(out, n_out * dim * 4)
            p = self._push(OP_TAKE_ROWS, f"take_rows @{x} [{rows},{dim}] -> @{out} [{n_out},{dim}]")
            p.rows, p.k, p.n, p.x, p.out = rows, dim, n_out, xi, oi
            self._take_n, self._take_from = n_out, rows
        finally:
            self._building = False

    # -- fused ops ----------------------------------------------------------

    def add_rmsnorm(self, x, out, g, rows, dim, eps):
        """out = scale_rows(x, rms_inv(x), g)"""
        cdef Instr *p
        self._enter("rmsnorm")
        try:
            x = _as_int("rmsnorm: x offset", x)
            out = _as_int("rmsnorm: out offset", out)
            rows = self._rows("rmsnorm", rows)
            dim = _dim("rmsnorm", "dim", dim)
            eps = _eps("rmsnorm", eps)
            gv = self._vector("rmsnorm g", g, dim)
            xi = self._region("rmsnorm x", x, rows * dim * 4)
            oi = self._region("rmsnorm out", out, rows * dim * 4)
            self._io("rmsnorm", [(x, rows * dim * 4)], [(out, rows * dim * 4)], (0,))
            self._wrote(out, rows * dim * 4)
            p = self._push(OP_RMSNORM, f"rmsnorm @{x} [{rows},{dim}] eps={float(np.float32(eps))} -> @{out}")
            p.rows, p.k, p.eps, p.x, p.out = rows, dim, eps, xi, oi
            p.vec = <const float *><uintptr_t>_addr(gv)
        finally:
            self._building = False

    def add_rmsnorm_add(self, y, res, out, g, rows, dim, eps):
        """out = res + rmsnorm(y) * g (a post-norm and its residual add; out may be res)"""
        cdef Instr *p
        self._enter("rmsnorm_add")
        try:
            y = _as_int("rmsnorm_add: y offset", y)
            res = _as_int("rmsnorm_add: res offset", res)
            out = _as_int("rmsnorm_add: out offset", out)
            rows = self._rows("rmsnorm_add", rows)
            dim = _dim("rmsnorm_add", "dim", dim)
            eps = _eps("rmsnorm_add", eps)
            gv = self._vector("rmsnorm_add g", g, dim)
            nb = rows * dim * 4
            yi = self._region("rmsnorm_add y", y, nb)
            ri = self._region("rmsnorm_add res", res, nb)
            oi = self._region("rmsnorm_add out", out, nb)
            self._io("rmsnorm_add", [(y, nb), (res, nb)], [(out, nb)], (1,))
            self._wrote(out, nb)
            p = self._push(OP_RMSNORM_ADD, f"rmsnorm_add @{res} + rmsnorm(@{y}) [{rows},{dim}] "
                                           f"eps={float(np.float32(eps))} -> @{out}")
            p.rows, p.k, p.eps, p.x, p.x2, p.out = rows, dim, eps, yi, ri, oi
            p.vec = <const float *><uintptr_t>_addr(gv)
        finally:
            self._building = False

    def add_swiglu(self, g, u, out, n):
        """out = silu(g) * u over n floats"""
        self._elementwise(OP_SWIGLU, "swiglu", g, u, out, n)

    def add_matmul_bias(self, x, out, w, b, rows, k, n, wtype=T_Q8_0):
        """out = x @ w.T + b"""
        self._enter("matmul_bias")
        try:
            x, out, rows, k, n = self._matmul_args("matmul_bias", x, out, rows, k, n)
            bv = self._vector("matmul_bias b", b, n)
            self._region("matmul_bias x", x, rows * k * 4)
            self._region("matmul_bias out", out, rows * n * 4)
            parts = self._weight("matmul_bias", w, wtype, n, k)
            self._io("matmul_bias", [(x, rows * k * 4)], [(out, rows * n * 4)])
            self._wrote(out, rows * n * 4)
            self._matmul_core(x, out, parts, rows, k, n, EPI_BIAS, bv, -1, n,
                              f"matmul_bias @{x} [{rows},{k}] x {self._type_label(parts)} [{n},{k}] + b -> @{out}")
        finally:
            self._building = False

    def add_matmul_add(self, x, res, out, w, rows, k, n, wtype=T_Q8_0):
        """out = res + x @ w.T (out may be res itself)"""
        self._enter("matmul_add")
        try:
            x, out, rows, k, n = self._matmul_args("matmul_add", x, out, rows, k, n)
            res = _as_int("matmul_add: res offset", res)
            self._region("matmul_add x", x, rows * k * 4)
            self._region("matmul_add res", res, rows * n * 4)
            self._region("matmul_add out", out, rows * n * 4)
            parts = self._weight("matmul_add", w, wtype, n, k)
            self._io("matmul_add", [(x, rows * k * 4), (res, rows * n * 4)], [(out, rows * n * 4)], (1,))
            self._wrote(out, rows * n * 4)
            self._matmul_core(x, out, parts, rows, k, n, EPI_ADD, None, res, n,
                              f"matmul_add @{res} + @{x} [{rows},{k}] x {self._type_label(parts)} [{n},{k}] -> @{out}")
        finally:
            self._building = False

    def add_gate_up_swiglu(self, x, out, w, rows, k, n_ff, wtype=T_Q8_0):
        """out[rows, n_ff] = silu(x @ Wgate.T) * (x @ Wup.T); w = [Wgate; Wup] as one array of
        2*n_ff rows or the list [Wgate, Wup]"""
        self._gate_up(EPI_SWIGLU, "gate_up_swiglu", x, out, w, rows, k, n_ff, wtype)

    def add_gate_up_geglu(self, x, out, w, rows, k, n_ff, wtype=T_Q8_0):
        """out[rows, n_ff] = gelu(x @ Wgate.T) * (x @ Wup.T) (gelu: tanh approximation); w as
        for add_gate_up_swiglu"""
        self._gate_up(EPI_GEGLU, "gate_up_geglu", x, out, w, rows, k, n_ff, wtype)

    def _gate_up(self, int epi, str name, x, out, w, rows, k, n_ff, wtype):
        self._enter(name)
        try:
            x, out, rows, k, n_ff = self._matmul_args(name, x, out, rows, k, n_ff, "n_ff")
            self._region(name + " x", x, rows * k * 4)
            self._region(name + " out", out, rows * n_ff * 4)
            parts = self._weight(name, w, wtype, 2 * n_ff, k)
            # The kernel computes gate rows [lo, hi) of one part and the up rows n_ff + [lo, hi)
            # together, reading the up rows from the part that holds row n_ff + lo: so the parts
            # must split at n_ff, and every boundary inside the up half must mirror one in the
            # gate half (e.g. [n_ff, a, n_ff - a] would read part 1 past its end).
            bounds = [0]
            for part in parts:
                bounds.append(bounds[len(bounds) - 1] + part[3])
            if len(parts) > 1 and (n_ff not in bounds or
                                   any(n_ff < b < 2 * n_ff and b - n_ff not in bounds for b in bounds)):
                raise ModelError(f"{name}: the weight parts ({' + '.join(str(pp[3]) for pp in parts)} "
                                 f"rows) must split at row {n_ff} (gate | up), with every split of the up "
                                 f"half also a split of the gate half")
            self._io(name, [(x, rows * k * 4)], [(out, rows * n_ff * 4)])
            self._wrote(out, rows * n_ff * 4)
            self._matmul_core(x, out, parts, rows, k, n_ff, epi, None, -1, n_ff,
                              f"{name} @{x} [{rows},{k}] x {self._type_label(parts)} [2x{n_ff},{k}] -> @{out}")
        finally:
            self._building = False

    def add_qkv_rope_kv(self, x, q_out, w, b, layer, n_heads, n_kv_heads, head_dim, theta, k,
                        wtype=T_Q8_0, mode="neox", pool=0):
        """q_out[T, n_heads*head_dim] = rope(x @ Wq.T + bq); k = rope(x @ Wk.T + bk), v = x @ Wv.T + bv
        stored to cache[layer] at the step's positions. w = [Wq; Wk; Wv] as one array or the list
        [Wq, Wk, Wv] (types may differ per part); b = [bq; bk; bv] or None."""
        self._qkv("qkv_rope_kv", x, q_out, w, b, None, None, 0.0, layer, n_heads, n_kv_heads, head_dim,
                  theta, k, wtype, mode, pool)

    def add_qkv_norm_rope_kv(self, x, q_out, w, gq, gk, layer, n_heads, n_kv_heads, head_dim, theta, eps, k,
                             wtype=T_Q8_0, mode="neox", pool=0):
        """As add_qkv_rope_kv without biases, with every head of q and of k RMS-normed (gains
        gq, gk [head_dim], epsilon eps) before the rotation: q = rope(head_rmsnorm(x @ Wq.T))."""
        self._qkv("qkv_norm_rope_kv", x, q_out, w, None, gq, gk, eps, layer, n_heads, n_kv_heads, head_dim,
                  theta, k, wtype, mode, pool)

    def _qkv(self, str name, x, q_out, w, b, gq, gk, eps, layer, n_heads, n_kv_heads, head_dim, theta, k,
             wtype, mode, pool):
        cdef Instr *p
        self._enter(name)
        try:
            rmode = _rope_mode(name, mode)
            pool = _int_in(f"{name}: pool", pool, 0, 1)
            normed = name == "qkv_norm_rope_kv"     # both gains required (None is not "no norm")
            if normed:
                eps = _eps(name, eps)
            x = _as_int(name + ": x offset", x)
            q_out = _as_int(name + ": q_out offset", q_out)
            n_heads, head_dim, n_kv_heads = self._head_dims(name, n_heads, head_dim, n_kv_heads)
            layer = self._layer(name, layer)
            theta = _theta(name, theta)
            k = _dim(name, "k", k)
            T = self.n_tokens
            nq, nkv = n_heads * head_dim, n_kv_heads * head_dim
            n = nq + 2 * nkv
            if n > _MAX_WIDTH:
                raise ModelError(f"{name}: {n} output rows, at most {_MAX_WIDTH}")
            bv = self._vector(name + " b", b, n) if b is not None else None
            gqv = self._vector(name + " gq", gq, head_dim) if normed else None
            gkv = self._vector(name + " gk", gk, head_dim) if normed else None
            self._region(name + " x", x, T * k * 4)
            qi = self._region(name + " q_out", q_out, T * nq * 4)
            parts = self._weight(name, w, wtype, n, k)
            self._kv_check(name, n_kv_heads, head_dim)
            self._io(name, [(x, T * k * 4)], [(q_out, T * nq * 4)])
            self._rope_check(name, head_dim, theta)
            self._kv_commit(layer, n_kv_heads, head_dim, pool)
            self._writes_kv = True
            self._wrote(q_out, T * nq * 4)
            slot = self._rope_slot(head_dim, theta)
            self._matmul_core(x, q_out, parts, T, k, n, EPI_QKV, bv, -1, nq,
                              f"qkv matmul @{x} [{T},{k}] x {self._type_label(parts)} [{n},{k}]"
                              f"{' + b' if bv is not None else ''} -> q @{q_out}, k/v scratch")
            self._fbuf_floats = max(self._fbuf_floats, T * 2 * nkv)
            p = self._push(OP_ROPE_KV, f"rope q @{q_out}, rope k, kv_write -> {'local ' if pool else ''}cache[{layer}] "
                                       f"theta={theta}")
            p.rows, p.n_heads, p.n_kv_heads, p.head_dim, p.layer = T, n_heads, n_kv_heads, head_dim, layer
            p.out, p.rope_slot, p.rope_mode, p.pool = qi, slot, rmode, pool
            if gqv is not None:     # the head norms before the rotation
                p.vec = <const float *><uintptr_t>_addr(gqv)
                p.vec2 = <const float *><uintptr_t>_addr(gkv)
                p.eps = eps
        finally:
            self._building = False

    # -- execution ----------------------------------------------------------

    def _att_rows(self):
        """Score rows an attention work unit holds: its query tokens (ATT_QB, fewer in a plan of
        fewer tokens) times the query heads of a KV group."""
        return min(ATT_QB, self.n_tokens) * self._att_group

    cdef _ensure_scratch(self, n_ctx):
        try:
            if self._qbuf is None or self._qbuf.nbytes < self._qbuf_bytes:
                self._qbuf = _aligned_buffer(max(self._qbuf_bytes, 64))
            if self._q16buf is None or self._q16buf.nbytes < self._q16_bytes:
                self._q16buf = _aligned_buffer(max(self._q16_bytes, 64))
            if self._fbuf is None or self._fbuf.size < self._fbuf_floats:
                self._fbuf = _aligned_buffer(max(self._fbuf_floats, 16) * 4, np.float32)
            rf = self._rope_floats()
            if self._rope is None or self._rope.size < rf:
                self._rope = _aligned_buffer(max(rf, 16) * 4, np.float32)
            need = self._att_rows() * n_ctx
            need = (need + 15) // 16 * 16
            if self._att is None or self._att.size < need * self.n_threads:
                self._att = _aligned_buffer(max(need * self.n_threads, 16) * 4, np.float32)
        except (MemoryError, ValueError, OverflowError):
            raise ModelError(f"plan.run: cannot allocate the scratch buffers (attention: "
                             f"{self._att_rows()} score rows x {n_ctx} positions x {self.n_threads} threads)") from None

    def _int32_input(self, what, v):
        """tokens / positions: a 1-D integer array of T values that fit int32 (checked before
        the cast, which would wrap them). Always a private copy: the run reads it without the
        GIL, after the checks, so the caller's array must not be what it reads."""
        try:
            a = np.asarray(v)
        except Exception:
            raise ModelError(f"plan.run: {what} must be an integer array, got {type(v).__name__}") from None
        if a.dtype.kind not in "iu":
            raise ModelError(f"plan.run: {what} must be integers, got dtype {a.dtype}")
        if a.ndim != 1:
            raise ModelError(f"plan.run: {what} must be a 1-D array, got shape {a.shape}")
        if a.shape[0] != self.n_tokens:
            raise ModelError(f"plan.run: {a.shape[0]} {what} for a plan of {self.n_tokens} tokens")
        lo, hi = int(a.min()), int(a.max())
        if lo < _INT32_MIN or hi > _INT32_MAX:
            raise ModelError(f"plan.run: {what} value {lo if lo < _INT32_MIN else hi} does not fit int32")
        return np.array(a, dtype=np.int32, order="C", copy=True)

    def _index_input(self, what, v, int64_t n, int64_t limit):
        """A 1-D integer array of n values in [0, limit), as a private int32 copy."""
        try:
            a = np.asarray(v)
        except Exception:
            raise ModelError(f"plan.run: {what} must be an integer array, got {type(v).__name__}") from None
        if a.dtype.kind not in "iu" or a.ndim != 1 or a.shape[0] != n:
            raise ModelError(f"plan.run: {what} must be {n} integers, got {a.dtype} {a.shape}")
        if int(a.min()) < 0 or int(a.max()) >= limit:
            raise ModelError(f"plan.run: {what} holds a value outside [0, {limit})")
        return np.array(a, dtype=np.int32, order="C", copy=True)

    def run(self, tokens=None, positions=None, kv=None, seqs=None, tables=None, block_size=None, rows=None,
            kv_local=None, tables_local=None):
        """Execute the plan for one step of n_tokens tokens (see the module docstring)."""
        if self.arena is None:
            raise ModelError("plan.run: the plan is not initialised")
        if self._running:
            raise ModelError("plan.run: this plan is already running (one run at a time per plan)")
        if self._building:
            raise ModelError("plan.run: an add_* call on this plan is in progress")
        self._running = True
        try:
            self._run(tokens, positions, kv, seqs, tables, block_size, rows, kv_local, tables_local)
        finally:
            self._running = False

    def _tables(self, seqs, tables, block_size, pos, int64_t n_rows):
        """(seq rows int32 [T], tables int32 [n, w], block size) checked against a cache of
        n_rows physical rows: every table entry a block of the cache, every position covered
        by its sequence's table, no two tokens writing one row. Without tables: one sequence
        whose single block is the whole cache (position p is row p)."""
        cdef int64_t T = self.n_tokens
        if tables is None:
            if seqs is not None or block_size is not None:
                raise ModelError("plan.run: seqs and block_size come with tables")
            tab = np.zeros((1, 1), np.int32)
            bs = n_rows
            seq = np.zeros(T, np.int32)
        else:
            try:
                tab = np.asarray(tables)
            except Exception:
                raise ModelError(f"plan.run: tables must be an integer array, got {type(tables).__name__}") from None
            if tab.dtype.kind not in "iu" or tab.ndim != 2 or tab.shape[0] < 1 or tab.shape[1] < 1:
                raise ModelError(f"plan.run: tables must be a 2-D integer array [sequences, blocks], got "
                                 f"{tab.dtype} {tab.shape}")
            bs = _as_int("plan.run: block_size", block_size)
            if bs < 1 or n_rows % bs:
                raise ModelError(f"plan.run: block_size {bs} does not divide the cache's {n_rows} rows")
            if int(tab.min()) < 0 or int(tab.max()) >= n_rows // bs:
                raise ModelError(f"plan.run: a table entry is outside the cache's {n_rows // bs} blocks")
            tab = np.array(tab, dtype=np.int32, order="C", copy=True)
            if seqs is None:
                raise ModelError("plan.run: tables need seqs (each token's table row)")
            seq = self._int32_input("seqs", seqs)
            if int(seq.min()) < 0 or int(seq.max()) >= tab.shape[0]:
                raise ModelError(f"plan.run: a token's table row is outside [0, {tab.shape[0]})")
        limit = tab.shape[1] * bs
        if int(pos.max()) >= limit:
            raise ContextOverflowError(f"position {int(pos.max())} does not fit the KV cache "
                                       f"of {limit} positions" + (" (its sequence's table)" if tables is not None else ""))
        where = tab[seq, pos // bs].astype(np.int64) * bs + pos % bs
        if self._writes_kv and np.unique(where).shape[0] != T:
            raise ModelError("plan.run: two tokens of the step write the same cache row "
                             "(the same position of one sequence, or a shared block)")
        return seq, tab, bs

    cdef _run(self, tokens, positions, kv, seqs, tables, block_size, rows, kv_local, tables_local):
        cdef Ctx c
        cdef int64_t T = self.n_tokens
        memset(&c, 0, sizeof(Ctx))
        # every argument given is checked, used or not
        tok = self._int32_input("tokens", tokens) if tokens is not None else None
        pos = self._int32_input("positions", positions) if positions is not None else None
        kc = vc = kc1 = vc1 = None
        if kv is not None:
            kc, vc = _kv_arrays(kv)
        if kv_local is not None:
            kc1, vc1 = _kv_arrays(kv_local)
        elif tables_local is not None:
            raise ModelError("plan.run: tables_local comes with kv_local")
        if not self._kv_layers1 and kv_local is not None:
            raise ModelError("plan.run: kv_local and tables_local are for plans with KV layers in pool 1")
        if self._kv_layers1 and tables_local is None:
            raise ModelError("plan.run: a plan with KV layers in pool 1 needs tables_local (and seqs)")
        if self._kv_layers1 and self._kv_layers and tables is None:
            raise ModelError("plan.run: a plan with two KV caches needs tables for both")
        if self._vocab >= 0:
            if tok is None:
                raise ModelError("plan.run: this plan embeds tokens; pass tokens")
            lo, hi = int(tok.min()), int(tok.max())
            if lo < 0 or hi >= self._vocab:
                bad = lo if lo < 0 else hi
                raise ModelError(f"plan.run: token id {bad} out of range [0, {self._vocab})")
            c.tokens = <const int32_t *><uintptr_t>_addr(tok)
        n_ctx = n_ctx1 = 0
        for pool, arrays, layers in ((0, (kc, vc), self._kv_layers), (1, (kc1, vc1), self._kv_layers1)):
            if not layers:
                continue
            if arrays[0] is None:
                raise ModelError("plan.run: this plan reads/writes the KV cache; pass kv" if pool == 0 else
                                 "plan.run: this plan reads/writes the sliding-window KV cache; pass kv_local")
            L, rows_n, H, D = arrays[0].shape
            if L < layers or H != self._kv_heads or D != self._kv_hd:
                raise ModelError(f"plan.run: KV cache {'' if pool == 0 else '(kv_local) '}shape {arrays[0].shape} "
                                 f"does not fit the plan ({layers} layers, {self._kv_heads} kv heads x {self._kv_hd})")
            c.pool[pool].k = <uint16_t *><uintptr_t>_addr(arrays[0])
            c.pool[pool].v = <uint16_t *><uintptr_t>_addr(arrays[1])
            c.pool[pool].n_ctx = rows_n
            c.kv_heads, c.kv_hd = H, D
            if pool == 0:
                n_ctx = rows_n
            else:
                n_ctx1 = rows_n
        if self._needs_pos:
            if pos is None:
                raise ModelError("plan.run: this plan uses positions; pass positions")
            if int(pos.min()) < 0:
                raise ModelError(f"plan.run: negative position {int(pos.min())}")
            c.pos = <const int32_t *><uintptr_t>_addr(pos)
        att_n = 0
        if self._kv_layers or self._kv_layers1:
            keep = []          # the checked copies the nogil run reads
            for pool, tb, rows_n, layers in ((0, tables, n_ctx, self._kv_layers),
                                             (1, tables_local, n_ctx1, self._kv_layers1)):
                if not layers:
                    continue
                seq, tab, bs = self._tables(seqs, tb, block_size, pos, rows_n)
                keep.append((seq, tab))
                c.seq_row = <const int32_t *><uintptr_t>_addr(seq)
                c.pool[pool].tables = <const int32_t *><uintptr_t>_addr(tab)
                c.pool[pool].tab_w, c.block_size = tab.shape[1], bs
                att_n = max(att_n, tab.shape[1] * bs)
            c.att_n = att_n
        elif seqs is not None or tables is not None or block_size is not None:
            raise ModelError("plan.run: seqs, tables and block_size are for plans that use the KV cache")
        take = None
        if self._take_n >= 0:
            if rows is None:
                raise ModelError("plan.run: this plan takes rows; pass rows")
            take = self._index_input("rows", rows, self._take_n, self._take_from)
            c.take = <const int32_t *><uintptr_t>_addr(take)
        elif rows is not None:
            raise ModelError("plan.run: rows is for plans with take_rows")
        self._ensure_scratch(att_n)
        c.arena = <float *><uintptr_t>_addr(self.arena)
        c.qbuf = <uint8_t *><uintptr_t>_addr(self._qbuf)
        c.q16buf = <uint8_t *><uintptr_t>_addr(self._q16buf)
        c.fbuf = <float *><uintptr_t>_addr(self._fbuf)
        c.rope = <float *><uintptr_t>_addr(self._rope)
        c.att = <float *><uintptr_t>_addr(self._att)
        c.att_stride = (self._att_rows() * att_n + 15) // 16 * 16
        c.T = T
        c.ins = self.ins
        c.n_ins = self.n_ins
        c.slots = &self.slots[0]
        c.n_slots = self.n_slots
        if self._counters is None or self._counters.shape[0] < self.n_ins:
            self._counters = np.zeros(max(self.n_ins, 1), dtype=np.int64)
        else:
            self._counters[:] = 0
        c.counters = <long long *><uintptr_t>_addr(self._counters)
        cdef int nt = self.n_threads
        with nogil:
            ignis_parallel(run_thread, &c, &c.bar, nt)


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


class KVCache:
    """float16 K and V caches [n_layers, n_ctx, n_kv_heads, head_dim] (zeros)."""

    def __init__(self, n_layers, n_ctx, n_kv_heads, head_dim):
        dims = []
        for name, v, hi in (("n_layers", n_layers, _MAX_HEADS), ("n_ctx", n_ctx, _MAX_WIDTH),
                            ("n_kv_heads", n_kv_heads, _MAX_HEADS), ("head_dim", head_dim, _MAX_HEADS)):
            v = _as_int(f"KVCache: {name}", v)
            if v < 1:
                raise ModelError(f"KVCache: {name} must be positive, got {v}")
            if v > hi:
                raise ModelError(f"KVCache: {name} must be at most {hi}, got {v}")
            dims.append(v)
        n_layers, n_ctx, n_kv_heads, head_dim = dims
        shape = (n_layers, n_ctx, n_kv_heads, head_dim)
        try:
            self.k = np.zeros(shape, np.float16)
            self.v = np.zeros(shape, np.float16)
        except (MemoryError, ValueError):
            raise ModelError(f"KVCache: cannot allocate 2 x {n_layers * n_ctx * n_kv_heads * head_dim * 2} "
                             f"bytes for {shape}") from None
        self.n_ctx = n_ctx
