# ignis/kernels/plan.pxi -- the Plan class: its state, the checks every add_* shares, and one
# builder that converts, checks and lowers any op from its entry in _OPS (plan_ops.pxi).
#
# Included by ignis/_kernels.pyx after plan_args.pxi and plan_ops.pxi; plan_run.pxi runs it.
# A failed add_* leaves the plan as it was: every check comes before the first change.

@cython.final
cdef class Workspace:
    """The memory plans run in: the activation arena and the kernels' scratch buffers.
    A plan made without one gets its own. Plans that never run at the same time may share
    one (an engine's plans, one per step shape, do): it grows to the largest plan's needs,
    so the memory is the largest plan's rather than the sum. Nothing in it outlives a run:
    a view taken from a plan is valid until another plan of the workspace runs."""
    cdef object arena
    cdef object qbuf, q16buf, fbuf, rope, att, kpbuf, kptab

    def __init__(self):
        self.arena = None
        self.qbuf = self.q16buf = self.fbuf = self.rope = self.att = self.kpbuf = self.kptab = None

    @property
    def nbytes(self) -> int:
        """Bytes held: the arena and every scratch buffer."""
        return sum(b.nbytes for b in (self.arena, self.qbuf, self.q16buf, self.fbuf, self.rope, self.att,
                                      self.kpbuf, self.kptab) if b is not None)

    cdef _reserve_arena(self, int64_t nbytes):
        if self.arena is None or self.arena.nbytes < nbytes:
            try:
                self.arena = _aligned_buffer(nbytes)
            except (MemoryError, ValueError, OverflowError):
                raise ModelError(f"plan: cannot allocate an arena of {nbytes} bytes") from None


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
    cdef Workspace _ws         # the arena and scratch (None until initialised)
    cdef object _refs
    cdef object _text
    cdef object _counters
    cdef int64_t _qbuf_bytes
    cdef int64_t _fbuf_floats
    cdef int64_t _att_group
    cdef int64_t _att_heads    # the most query heads of an attention instruction
    cdef object _qcache        # (x offset, rows, k) of the x whose Q8_0 copy is in scratch
    cdef object _q16cache      # the same for the Q16 scratch
    cdef int64_t _q16_bytes
    cdef int64_t _kp_bytes     # per thread: prepared weight rows (matmul.pxi kp_bytes)
    cdef int64_t _kp_tab_bytes  # their token tables (matmul.pxi kp_tab_bytes)
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

    def __init__(self, arena_bytes, n_threads, n_tokens, workspace=None):
        check_isa()
        if self._ws is not None or self._running or self._building:
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
        if workspace is None:
            workspace = Workspace()
        elif not isinstance(workspace, Workspace):
            raise ModelError(f"plan workspace must be a Workspace, got {type(workspace).__name__}")
        (<Workspace>workspace)._reserve_arena(arena_bytes)
        self.arena_bytes = arena_bytes
        self.n_threads = n_threads
        self.n_tokens = n_tokens
        self._refs = []
        self._text = []
        self._counters = None
        self._qbuf_bytes = 0
        self._fbuf_floats = 0
        self._att_group = 0
        self._att_heads = 0
        self._qcache = None
        self._q16cache = None
        self._q16_bytes = 0
        self._kp_bytes = 0
        self._kp_tab_bytes = 0
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
        self._ws = workspace

    # -- inspection ---------------------------------------------------------

    @property
    def arena(self):
        """A writable uint8 view of the plan's arena_bytes (None before initialisation)."""
        return None if self._ws is None else self._ws.arena[:self.arena_bytes]

    @property
    def workspace(self):
        return self._ws

    @property
    def n_instructions(self) -> int:
        return self.n_ins

    def describe(self) -> list:
        """One line per lowered instruction."""
        return list(self._text) if self._text is not None else []

    def f32(self, offset, shape):
        """A float32 view of the arena region starting at byte `offset`."""
        if self._ws is None:
            raise ModelError("view: the plan is not initialised")
        offset = _as_int("view offset", offset)
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        dims = tuple(_dim("view", "shape entry", s, self.arena_bytes) for s in dims)
        n = 1
        for s in dims:
            n *= s
        self._region("view", offset, n * 4)
        return self._ws.arena[offset:offset + n * 4].view(np.float32).reshape(dims)

    # -- validation helpers (Python ints throughout) ------------------------

    cdef int64_t _rope_floats(self):
        cdef int64_t total = 0, i
        for i in range(self.n_slots):
            total += self.n_tokens * self.slots[i].head_dim
        return total

    cdef int _enter(self, str name) except -1:
        """Start an add_*: the plan is initialised, not running and not being extended
        (an argument's __index__ or __array__ may run Python code, another thread may call run)."""
        if self._ws is None:
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
        # scratch for prepared rows, at a level that prepares them (matmul.pxi; a plan run at
        # another level than it was built at takes the plain tiles where its scratch falls short)
        kp = kp_bytes(max(ignis_kq_row_bytes(part[1], k) for part in parts),
                      2 if epi == EPI_SWIGLU or epi == EPI_GEGLU else 1)
        if not act16 and rows > TILE and kp:
            self._kp_bytes = max(self._kp_bytes, kp)
            self._kp_tab_bytes = max(self._kp_tab_bytes, kp_tab_bytes(rows, k))
        self._kp_bytes = max(self._kp_bytes, wf_rows_bytes(p))     # F16 / BF16 rows widened once
        if not act16 and zt_wanted(rows, k, p.ptype, p.n_parts):
            self._kp_tab_bytes = max(self._kp_tab_bytes, zt_tab_bytes(rows, k))
        if vec is not None:
            p.vec = <const float *><uintptr_t>_addr(vec)
        else:
            p.vec = NULL

    # -- the builder ----------------------------------------------------------

    def _takes_rows(self):
        return self._take_n >= 0

    def _convert(self, str name, str key, str kind, v):
        """One add_* argument as the Python value its kind needs (ModelError otherwise)."""
        if kind == "off":
            return _as_int(f"{name}: {key} offset", v)
        if kind == "rows":
            return self._rows(name, v)
        if kind == "n_out":
            return self._rows(f"{name} n_out", v)
        if kind == "dim":
            return _dim(name, key, v)
        if kind == "width":         # an elementwise op's element count: at most the arena's floats
            return _dim(name, key, v, max(1, self.arena_bytes // 4))
        if kind == "heads":
            return _dim(name, key, v, _MAX_HEADS)
        if kind == "eps":
            return _eps(name, v)
        if kind == "theta":
            return _theta(name, v)
        if kind == "mode":
            return _rope_mode(name, v)
        if kind == "pool":
            return _int_in(f"{name}: pool", v, 0, 1)
        if kind == "window":
            return _int_in(f"{name}: window", v, 0, _MAX_WIDTH)
        if kind == "layer":
            return self._layer(name, v)
        if kind == "factor":
            f = _as_real(f"{name}: factor", v)
            if abs(f) > _F32_MAX:
                raise ModelError(f"{name}: factor {f} does not fit float32")
            return f
        return v                    # "raw": checked where it is used (weights, types, vectors)

    cdef _build(self, str name, tuple values):
        """add_<name>(*values): every argument converted and checked, then the plan extended."""
        spec = _OPS[name]
        cdef Instr *p
        cdef int64_t T = self.n_tokens
        self._enter(name)
        try:
            a = {"T": T}
            for (key, kind), v in zip(spec.args, values):
                a[key] = self._convert(name, key, kind, v)
            if spec.heads is not None:
                heads, kv_heads = spec.heads
                if kv_heads is None:
                    a[heads], a["head_dim"], _ = self._head_dims(name, a[heads], a["head_dim"])
                else:
                    a[heads], a["head_dim"], a[kv_heads] = self._head_dims(name, a[heads], a["head_dim"],
                                                                           a[kv_heads])
            if spec.prepare is not None:
                spec.prepare(self, name, a)
            vectors = {}
            for key, length, optional in spec.vectors:
                if not (optional and a[key] is None):
                    vectors[key] = self._vector(f"{name} {key}", a[key], length(a))
            ins, outs = [], []
            for key, role, size, label in spec.regions:
                nb = size(a, T)
                a[key + "_i"] = self._region(label or f"{name} {key}", a[key], nb)
                if role == "in":
                    ins.append((a[key], nb))
                elif role == "out":
                    outs.append((a[key], nb))
            if spec.weight is not None:
                rows, k_key = spec.weight
                a["parts"] = self._weight(name, a["w"], a["wtype"], rows(a), a[k_key])
            if spec.check is not None:
                spec.check(self, name, a)
            if "kv" in spec.effects:
                self._kv_check(name, a["n_kv_heads"], a["head_dim"])
            if spec.io is True or spec.io == "unless_same" and a["out"] != a["x"]:
                self._io(name, ins, outs, spec.alias)
            if "rope" in spec.effects:
                self._rope_check(name, a["head_dim"], a["theta"])
            # every check passed: from here on the plan changes
            self._commit(spec, a)
            for offset, nb in outs:
                self._wrote(offset, nb)
            if "rope" in spec.effects:
                a["slot"] = self._rope_slot(a["head_dim"], a["theta"])
            if spec.lower == "one":
                p = self._push(spec.op, spec.text(a))
                self._fill(p, spec.fields(a), vectors, a)
                if spec.weight is not None:
                    self._set_parts(p, a["parts"])
            elif spec.lower == "matmul":
                n = a["n_ff"] if "n_ff" in a else a["n"]
                vec = next(iter(vectors.values())) if vectors else None
                self._matmul_core(a["x"], a["out"], a["parts"], a["rows"], a["k"], n, spec.epi, vec,
                                  a["res"] if "res" in a else -1, n, spec.text(a), a.get("act16", False))
            else:                   # qkv: the matmul (q to q_out, k and v to scratch), then rope + kv_write
                bv = vectors.get("b")
                self._matmul_core(a["x"], a["q_out"], a["parts"], T, a["k"], a["n"], EPI_QKV, bv, -1, a["nq"],
                                  f"qkv matmul @{a['x']} [{T},{a['k']}] x {_type_label(a['parts'])} "
                                  f"[{a['n']},{a['k']}]{' + b' if bv is not None else ''} -> q @{a['q_out']}, "
                                  f"k/v scratch")
                self._fbuf_floats = max(self._fbuf_floats, T * 2 * a["nkv"])
                p = self._push(spec.op, spec.text(a))
                self._fill(p, spec.fields(a), vectors, a)
        finally:
            self._building = False

    cdef _commit(self, spec, dict a):
        """What the op adds to the plan's run-time needs (KV pools, tokens, rows)."""
        if "kv" in spec.effects:
            self._kv_commit(a["layer"], a["n_kv_heads"], a["head_dim"], a["pool"])
        if "writes_kv" in spec.effects:
            self._writes_kv = True
        if "attention" in spec.effects:
            self._att_group = max(self._att_group, a["n_heads"] // a["n_kv_heads"])
            self._att_heads = max(self._att_heads, a["n_heads"])
        if "take" in spec.effects:
            self._take_n, self._take_from = a["n_out"], a["rows"]
        if "embed" in spec.effects:
            self._vocab = a["vocab"] if self._vocab < 0 else min(self._vocab, a["vocab"])

    cdef _fill(self, Instr *p, dict f, dict vectors, dict a):
        """Set an instruction's fields from its op's fields(a); vec / vec2 name a vector."""
        p.rows = f.get("rows", 0)
        p.k = f.get("k", 0)
        p.n = f.get("n", 0)
        p.n_heads = f.get("n_heads", 0)
        p.n_kv_heads = f.get("n_kv_heads", 0)
        p.head_dim = f.get("head_dim", 0)
        p.layer = f.get("layer", 0)
        p.eps = f.get("eps", 0.0)
        p.factor = f.get("factor", 0.0)
        p.x = f.get("x", -1)
        p.x2 = f.get("x2", -1)
        p.out = f.get("out", -1)
        p.window = f.get("window", 0)
        p.pool = f.get("pool", 0)
        p.rope_mode = f.get("rope_mode", 0)
        p.rope_slot = a.get("slot", -1)
        if "vec" in f:
            p.vec = <const float *><uintptr_t>_addr(vectors[f["vec"]])
        if "vec2" in f:
            p.vec2 = <const float *><uintptr_t>_addr(vectors[f["vec2"]])

    # -- the ops (docstrings: the module docstring of _kernels.pyx) --------------

    def add_embed(self, out, w, dim, wtype=T_Q8_0):
        """out[T, dim] = row tokens[t] of w (dequantized)."""
        self._build("embed", (out, w, dim, wtype))

    def add_rms_inv(self, x, out, rows, dim, eps):
        """out[rows, 1] = 1 / sqrt(sum x^2 / dim + eps)"""
        self._build("rms_inv", (x, out, rows, dim, eps))

    def add_scale_rows(self, x, r, out, g, rows, dim):
        """out = (x * r[t]) * g"""
        self._build("scale_rows", (x, r, out, g, rows, dim))

    def add_matmul(self, x, out, w, rows, k, n, wtype=T_Q8_0, act="q8_0"):
        """out[rows, n] = x[rows, k] @ w.T. act="q16" quantizes x to 16-bit blocks instead of
        Q8_0 (Q8_0, F32 and F16 weights): about 256x less activation rounding, for the matmul
        whose accuracy matters most (the output projection: top-1 agreement)."""
        self._build("matmul", (x, out, w, rows, k, n, wtype, act))

    def add_add_bias(self, y, out, b, rows, n):
        """out = y + b"""
        self._build("add_bias", (y, out, b, rows, n))

    def add_rope(self, x, out, n_heads, head_dim, theta, mode="neox"):
        """Rotation of each head of x [T, n_heads*head_dim] at the step's positions (mode
        "neox": pairs (i, i + hd/2); "normal": adjacent pairs)."""
        self._build("rope", (x, out, n_heads, head_dim, theta, mode))

    def add_kv_write(self, k, v, layer, n_kv_heads, head_dim, pool=0):
        """cache.k/v[layer][pos[t]] = f16(k[t]), f16(v[t]) (pool 1: the kv_local cache)"""
        self._build("kv_write", (k, v, layer, n_kv_heads, head_dim, pool))

    def add_attention(self, q, out, layer, n_heads, n_kv_heads, head_dim, window=0, pool=0):
        """Causal GQA attention of q [T, n_heads*head_dim] over cache[layer] positions 0..pos[t]
        (window > 0: only the last `window` of them, pos[t] - window < p <= pos[t])."""
        self._build("attention", (q, out, layer, n_heads, n_kv_heads, head_dim, window, pool))

    def add_add(self, a, b, out, n):
        """out = a + b over n floats"""
        self._build("add", (a, b, out, n))

    def add_mul(self, a, b, out, n):
        """out = a * b over n floats"""
        self._build("mul", (a, b, out, n))

    def add_silu(self, x, out, n):
        """out = x / (1 + exp(-x)) over n floats"""
        self._build("silu", (x, out, n))

    def add_gelu(self, x, out, n):
        """out = gelu(x) (tanh approximation) over n floats"""
        self._build("gelu", (x, out, n))

    def add_scale(self, x, out, n, factor):
        """out = x * factor (a float32 constant) over n floats"""
        self._build("scale", (x, out, n, factor))

    def add_swiglu(self, g, u, out, n):
        """out = silu(g) * u over n floats"""
        self._build("swiglu", (g, u, out, n))

    def add_head_rmsnorm(self, x, out, g, rows, n_heads, head_dim, eps):
        """rmsnorm of every head of x [rows, n_heads*head_dim] with one gain g [head_dim]"""
        self._build("head_rmsnorm", (x, out, g, rows, n_heads, head_dim, eps))

    def add_take_last(self, x, out, rows, dim):
        """out[1, dim] = x[rows - 1]"""
        self._build("take_last", (x, out, rows, dim))

    def add_take_rows(self, x, out, rows, dim, n_out):
        """out[n_out, dim] = x[rows[i]] for the run's `rows` (int32 [n_out], each in [0, rows))."""
        self._build("take_rows", (x, out, rows, dim, n_out))

    def add_rmsnorm(self, x, out, g, rows, dim, eps):
        """out = scale_rows(x, rms_inv(x), g)"""
        self._build("rmsnorm", (x, out, g, rows, dim, eps))

    def add_rmsnorm_add(self, y, res, out, g, rows, dim, eps):
        """out = res + rmsnorm(y) * g (a post-norm and its residual add; out may be res)"""
        self._build("rmsnorm_add", (y, res, out, g, rows, dim, eps))

    def add_matmul_bias(self, x, out, w, b, rows, k, n, wtype=T_Q8_0):
        """out = x @ w.T + b"""
        self._build("matmul_bias", (x, out, w, b, rows, k, n, wtype))

    def add_matmul_add(self, x, res, out, w, rows, k, n, wtype=T_Q8_0):
        """out = res + x @ w.T (out may be res itself)"""
        self._build("matmul_add", (x, res, out, w, rows, k, n, wtype))

    def add_gate_up_swiglu(self, x, out, w, rows, k, n_ff, wtype=T_Q8_0):
        """out[rows, n_ff] = silu(x @ Wgate.T) * (x @ Wup.T); w = [Wgate; Wup] as one array of
        2*n_ff rows or the list [Wgate, Wup]"""
        self._build("gate_up_swiglu", (x, out, w, rows, k, n_ff, wtype))

    def add_gate_up_geglu(self, x, out, w, rows, k, n_ff, wtype=T_Q8_0):
        """out[rows, n_ff] = gelu(x @ Wgate.T) * (x @ Wup.T) (gelu: tanh approximation); w as
        for add_gate_up_swiglu"""
        self._build("gate_up_geglu", (x, out, w, rows, k, n_ff, wtype))

    def add_qkv_rope_kv(self, x, q_out, w, b, layer, n_heads, n_kv_heads, head_dim, theta, k, wtype=T_Q8_0,
                        mode="neox", pool=0):
        """q_out[T, n_heads*head_dim] = rope(x @ Wq.T + bq); k = rope(x @ Wk.T + bk), v = x @ Wv.T + bv
        stored to cache[layer] at the step's positions. w = [Wq; Wk; Wv] as one array or the list
        [Wq, Wk, Wv] (types may differ per part); b = [bq; bk; bv] or None."""
        self._build("qkv_rope_kv", (x, q_out, w, b, layer, n_heads, n_kv_heads, head_dim, theta, k, wtype,
                                    mode, pool))

    def add_qkv_norm_rope_kv(self, x, q_out, w, gq, gk, layer, n_heads, n_kv_heads, head_dim, theta, eps, k,
                             wtype=T_Q8_0, mode="neox", pool=0):
        """As add_qkv_rope_kv without biases, with every head of q and of k RMS-normed (gains
        gq, gk [head_dim], epsilon eps) before the rotation: q = rope(head_rmsnorm(x @ Wq.T))."""
        self._build("qkv_norm_rope_kv", (x, q_out, w, gq, gk, layer, n_heads, n_kv_heads, head_dim, theta,
                                         eps, k, wtype, mode, pool))

    # -- running (plan_run.pxi) --------------------------------------------------

    def run(self, tokens=None, positions=None, kv=None, seqs=None, tables=None, block_size=None, rows=None,
            kv_local=None, tables_local=None):
        """Execute the plan for one step of n_tokens tokens (see the module docstring)."""
        if self._ws is None:
            raise ModelError("plan.run: the plan is not initialised")
        if self._running:
            raise ModelError("plan.run: this plan is already running (one run at a time per plan)")
        if self._building:
            raise ModelError("plan.run: an add_* call on this plan is in progress")
        self._running = True
        try:
            _run(self, tokens, positions, kv, seqs, tables, block_size, rows, kv_local, tables_local)
        finally:
            self._running = False
