"""The kernel Plan API under random, mostly invalid arguments, each case in a child process:
`python -m fuzz.plan_api --cases 10000 [--seed N]`.

Modules: specs (the vocabulary), build (arguments from specs, in the child), oracle (the
numpy reference, independent of ignis), child (one case), server (the fork server),
strategies (hypothesis), __main__ (the long run).

A case builds one `ignis._kernels.Plan` (arena size, threads, tokens), adds 1-3 instructions
through the public `add_*` methods and usually runs it. The arguments start from a valid
call (a small random layout in the arena, random weights of every kernel type, whole or as
part lists) and 0-4 of them are then replaced by something wrong: offsets negative,
unaligned, past the arena or near 2^63; dims 0, negative, off by one, 2^31, 2^62+1, 2^63,
2^64+x, 10^30; part lists re-split anywhere (0-4 parts, empty parts, a gate/up split that
does not mirror), rows added or dropped, bytes that are not whole rows, wrong dtypes,
non-contiguous / 0-d / Fortran / read-only / subclassed arrays, non-arrays; weight types
unsupported, of the wrong Python type, or lists of the wrong length; vectors of the wrong
length or of strings/complex/bool/objects; eps/theta NaN, inf, negative, 10^400; act
strings; Plan() sizes, thread and token counts; run() tokens/positions of float/string/
object dtype, outside int32 (2^32+5 used to wrap to 5), empty, 2-D, of the wrong length,
out of range; KV caches that are None, not caches, tuples of the wrong length, of the wrong
dtype/shape/layout, read-only.

What must hold (checked in the child, which reports back; a signal, a hang or a non-zero
exit is a failure of the case):
  - every call returns or raises an IgnisError with a one-line message: never another
    exception type;
  - a failed add_* leaves the plan unchanged (instruction count and listing);
  - after a successful run, every instruction whose inputs are known (not rewritten by a
    later instruction, or only by earlier ones) matches a numpy reference computed from the
    weights dequantized by the `gguf` package (not by ignis): matmuls within the Q8_0
    activation rounding bound (per output: sum over blocks of max|x_block|/127 * sum|w|),
    the rest within float tolerances; and nothing outside the written arena regions and
    KV cache rows changed.
Weights and KV caches live in memory that ends at an inaccessible page, so a read past the
end of a weight is a SIGSEGV, not a silent wrong value.

Child processes are forked by a small case server (a fresh interpreter that has imported
numpy, gguf and ignis._kernels but never runs an OpenMP region: libgomp is not fork-safe
after one), so a case costs a fork, not an interpreter start, and the parent (pytest, or
this script) never forks at all.
"""
from fuzz.plan_api.build import build, weight_bytes
from fuzz.plan_api.child import execute
from fuzz.plan_api.oracle import CaseFailure, Oracle, dequantize, matmul_ref, q8_bound, rope_ref
from fuzz.plan_api.server import TIMEOUT, Runner, check_case, run_case
from fuzz.plan_api.specs import (BF16, BLOCK, F16, F32, FLOAT_TYPES, IQ4_NL, IQ4_XS, KV, MATMULS, OPS, Q2_K, Q3_K, Q4_0,
                                 Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, SIGS, Case, Hang, Ints, Opaque, Segfault, Vec,
                                 Wt, plan_ops)
from fuzz.plan_api.strategies import cases

__all__ = ["BF16", "BLOCK", "F16", "F32", "FLOAT_TYPES", "IQ4_NL", "IQ4_XS", "KV", "MATMULS", "OPS", "Q2_K", "Q3_K",
           "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0",
           "SIGS", "TIMEOUT", "Case", "CaseFailure", "Hang", "Ints", "Opaque", "Oracle", "Runner", "Segfault", "Vec",
           "Wt", "build", "cases", "check_case", "dequantize", "execute", "matmul_ref", "plan_ops", "q8_bound",
           "rope_ref", "run_case", "weight_bytes"]
