# ignis/kernels/vm.pxi -- the plan interpreter: one OpenMP region per run, every thread
# walks the instruction list, a barrier between instructions.
#
# Included by ignis/_kernels.pyx. No Python objects, no GIL, no allocation: everything
# an instruction touches was validated and sized by Plan before the nogil call.

cdef void exec_instr(Ctx *c, int64_t i, int tid, int nt) noexcept nogil:
    cdef Instr *ins = &c.ins[i]
    cdef int op = ins.op
    if op == OP_MATMUL:
        k_matmul(c, ins, &c.counters[2 * i], tid, nt)
    elif op == OP_QUANTIZE:
        k_quantize(c, ins, tid, nt)
    elif op == OP_QUANTIZE16:
        k_quantize16(c, ins, tid, nt)
    elif op == OP_ADD or op == OP_MUL or op == OP_SILU or op == OP_SWIGLU or op == OP_GELU or op == OP_SCALE:
        k_elementwise(c, ins, tid, nt)
    elif op == OP_RMSNORM:
        k_rmsnorm(c, ins, tid, nt)
    elif op == OP_ATTENTION:
        k_attention(c, ins, &c.counters[2 * i], tid, nt)
    elif op == OP_HEAD_RMSNORM:
        k_head_rmsnorm(c, ins, tid, nt)
    elif op == OP_RMSNORM_ADD:
        k_rmsnorm_add(c, ins, tid, nt)
    elif op == OP_ROPE_KV:
        k_rope_kv(c, ins, tid, nt)
    elif op == OP_ROPE:
        k_rope(c, ins, tid, nt)
    elif op == OP_KV_WRITE:
        k_kv_write(c, ins, tid, nt)
    elif op == OP_ADD_BIAS:
        k_add_bias(c, ins, tid, nt)
    elif op == OP_RMS_INV:
        k_rms_inv(c, ins, tid, nt)
    elif op == OP_SCALE_ROWS:
        k_scale_rows(c, ins, tid, nt)
    elif op == OP_EMBED:
        k_embed(c, ins, tid, nt)
    elif op == OP_TAKE_LAST:
        k_take_last(c, ins, tid, nt)
    elif op == OP_TAKE_ROWS:
        k_take_rows(c, ins, tid, nt)


cdef void run_thread(void *p, int tid, int nt) noexcept nogil:
    cdef Ctx *c = <Ctx *>p
    cdef int64_t i
    if c.n_slots:
        fill_rope_tables(c, tid, nt)
        ignis_bar_wait(&c.bar)
    for i in range(c.n_ins):
        exec_instr(c, i, tid, nt)
        ignis_bar_wait(&c.bar)
