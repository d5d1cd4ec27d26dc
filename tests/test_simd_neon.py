"""The SIMD paths of ignis/_neon.h against its scalar definition, on random inputs.

tests/simd/harness.c includes the header, runs every SIMD function next to its
ignis_scalar_* reference and prints one PASS/FAIL line per check (exact bits for
conversions, quantized bytes, every quantized dot and matmul tile, axpy, exp and
silu; |simd - scalar| <= 1e-5 * sum |terms| for the f32 dot and softmax sums).
One build holds every level of its architecture (each compiled in its own target
region); `harness LEVEL` checks one. The aarch64 levels (neon, dotprod, i8mm) are
built with Debian's aarch64 cross compiler and run under qemu-aarch64 -cpu max; the
x86-64 levels (avx2, avxvnni, avx512) run natively when this CPU has them (skipped
with the level's name otherwise), and the portable scalar build is checked too.
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


ARM_LEVELS = ["neon", "dotprod", "i8mm"]
X86_LEVELS = ["avx2", "avxvnni", "avx512"]


@pytest.fixture(scope="module")
def aarch64_harness(tmp_path_factory):
    cc, qemu = _cross_tools()
    exe = tmp_path_factory.mktemp("simd") / "harness-aarch64"
    _build(cc, exe, ["-static"])
    return qemu, exe


@pytest.mark.parametrize("level", ARM_LEVELS)
def test_arm_level_matches_scalar_under_qemu(aarch64_harness, level):
    """One build has every aarch64 level; qemu's `max` CPU has dotprod and i8mm."""
    qemu, exe = aarch64_harness
    _check_output([qemu, "-cpu", "max", str(exe), level], level)


def test_arm_detection_under_qemu(aarch64_harness):
    """HWCAP decides: a Cortex-A53 (ARMv8.0) runs NEON only, `max` runs every level."""
    qemu, exe = aarch64_harness

    def runnable(cpu):
        out = subprocess.run([qemu, "-cpu", cpu, str(exe), "--levels"], capture_output=True, text=True, timeout=60)
        return {name: ok == "1" for name, ok in (line.split() for line in out.stdout.splitlines())}

    assert runnable("cortex-a53") == {"scalar": True, "neon": True, "dotprod": False, "i8mm": False}
    assert runnable("max") == {"scalar": True, "neon": True, "dotprod": True, "i8mm": True}
    # asking for a level the CPU lacks is refused, not run
    done = subprocess.run([qemu, "-cpu", "cortex-a53", str(exe), "dotprod"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout.startswith("SKIP"), done.stdout


@pytest.fixture(scope="module")
def native_harness(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path_factory.mktemp("simd") / "harness-native"
    _build(cc, exe)       # no -m flags: every level is compiled in its own target region
    out = subprocess.run([str(exe), "--levels"], capture_output=True, text=True, timeout=60)
    return exe, {name: ok == "1" for name, ok in (line.split() for line in out.stdout.splitlines())}


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
@pytest.mark.parametrize("level", X86_LEVELS)
def test_x86_level_matches_scalar_natively(native_harness, level):
    exe, levels = native_harness
    assert level in levels, f"the x86-64 build lacks level {level}: {levels}"
    if not levels[level]:
        pytest.skip(f"this CPU cannot run the {level} level (CPUID or the OS-enabled register state "
                    f"lacks it; qemu-x86_64 7.2 emulates neither AVX-512 nor AVX-VNNI)")
    _check_output([str(exe), level], level)


def test_scalar_build_is_self_consistent(tmp_path):
    """The portable build (IGNIS_FORCE_SCALAR: IGNIS_ISA=scalar or IGNIS_PORTABLE=1 at build
    time) compiles, has only the scalar level and runs."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path / "harness-scalar"
    _build(cc, exe, ["-DIGNIS_FORCE_SCALAR"])
    _check_output([str(exe)], "scalar")
    out = subprocess.run([str(exe), "--levels"], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["scalar", "1"]
