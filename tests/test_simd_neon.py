"""The SIMD paths of ignis/_neon.h against its scalar definition, on random inputs.

tests/simd/harness.c includes the header, runs every SIMD function next to its
ignis_scalar_* reference and prints one PASS/FAIL line per check (exact bits for
conversions, quantized bytes, every quantized dot and matmul tile, axpy, exp and
silu; |simd - scalar| <= 1e-5 * sum |terms| for the f32 dot and softmax sums).
The NEON path is built with Debian's aarch64 cross compiler and run under
qemu-aarch64 (plain ARMv8-A, and ARMv8.2-A with the dot product extension); the
AVX2 path and the portable scalar build are built and run natively.
"""
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "simd" / "harness.c"
EXPECTED_CHECKS = {
    "f16_to_f32", "f32_to_f16", "quantize_q8_0", "vec_dot_q8_0", "tile_q8_0", "vec_dot_q5_0",
    "tile_q5_0", "vec_dot_q4_k", "tile_q4_k", "vec_dot_q6_k", "tile_q6_k", "quant_dot_definition",
    "quant_dot_int", "dot_f32", "dot_f32_f16", "axpy_f32", "axpy_f16", "expf", "expf_accuracy",
    "exp_sub_sum", "silu", "tile_q8_0_q16", "q16_accuracy",
}
FLAGS = ["-O2", "-ffp-contract=off", f"-I{ROOT / 'ignis'}", str(HARNESS), "-lm"]


def _build(cc, out, extra=()):
    cmd = [cc, *extra, *FLAGS, "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"


def _check_output(cmd, expected_simd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    assert lines and lines[0] == f"SIMD {expected_simd}", done.stdout + done.stderr
    results = {}
    for line in lines[1:]:
        status, _, rest = line.partition(" ")
        if status in ("PASS", "FAIL"):
            results[rest.split(":")[0]] = (status, line)
    failed = [line for status, line in results.values() if status == "FAIL"]
    assert not failed, "\n".join(failed)
    assert EXPECTED_CHECKS <= set(results), sorted(EXPECTED_CHECKS - set(results))
    assert done.returncode == 0, done.stdout + done.stderr


def _cross_tools():
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if not cc or not qemu:
        pytest.skip("aarch64 cross compiler or qemu-aarch64 missing (Debian packages gcc-aarch64-linux-gnu, "
                    "libc6-dev-arm64-cross, qemu-user; .ci/run installs them)")
    return cc, qemu


@pytest.mark.parametrize("march", [None, "armv8.2-a+dotprod"], ids=["armv8-a", "armv8.2-a+dotprod"])
def test_neon_matches_scalar_under_qemu(tmp_path, march):
    cc, qemu = _cross_tools()
    exe = tmp_path / "harness-aarch64"
    _build(cc, exe, ["-static"] + ([f"-march={march}"] if march else []))
    cmd = [qemu] + (["-cpu", "max"] if march else []) + [str(exe)]
    _check_output(cmd, "neon")


def _has_avx2():
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return {"avx2", "fma", "f16c"} <= set(flags.split(":", 1)[1].split())


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
def test_avx2_matches_scalar_natively(tmp_path):
    if not _has_avx2():
        pytest.skip("this CPU lacks AVX2/FMA/F16C")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path / "harness-avx2"
    _build(cc, exe, ["-mavx2", "-mfma", "-mf16c"])
    _check_output([str(exe)], "avx2")


def test_scalar_build_is_self_consistent(tmp_path):
    """The portable build (IGNIS_FORCE_SCALAR, as IGNIS_PORTABLE=1 gives on x86-64) compiles and runs."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path / "harness-scalar"
    _build(cc, exe, ["-DIGNIS_FORCE_SCALAR"])
    _check_output([str(exe)], "scalar")
