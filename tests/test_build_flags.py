"""build_flags.py: the compiler and linker flags setup.py chooses, per platform (none of
these builds runs here; the function sees the system only through its arguments)."""
import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "build_flags", Path(__file__).resolve().parents[1] / "build_flags.py")
bf = sys.modules["build_flags"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bf)

HOMEBREW_ARM = "/opt/homebrew/opt/libomp"
HOMEBREW_INTEL = "/usr/local/opt/libomp"


def _libomp_at(*prefixes):
    """An exists() that sees a libomp install under each prefix and nothing else."""
    files = {f"{p}/include/omp.h" for p in prefixes} | {f"{p}/lib/libomp.dylib" for p in prefixes}
    return files.__contains__


def _nothing(path):
    return False


def _no_isa_flags(flags):
    return not any(a.startswith(("-m", "-march", "/arch")) for a in flags.compile_args)


def test_linux_gcc_x86_64():
    f = bf.build_flags("linux", "x86_64", "gcc", {}, _nothing)
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-fopenmp"]
    assert f.link_args == ["-fopenmp"]
    assert _no_isa_flags(f)
    assert f.define_macros == [] and f.include_dirs == [] and f.library_dirs == []


def test_linux_gcc_aarch64():
    f = bf.build_flags("linux", "aarch64", "gcc", {}, _nothing)
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-fopenmp"]
    assert f.link_args == ["-fopenmp"]
    assert f.define_macros == []


def test_linux_clang():
    f = bf.build_flags("linux", "x86_64", "clang", {}, _nothing)
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-fopenmp"]
    assert f.link_args == ["-fopenmp"]
    assert _no_isa_flags(f)


def test_macos_arm64_homebrew_libomp():
    f = bf.build_flags("darwin", "arm64", "apple-clang", {}, _libomp_at(HOMEBREW_ARM))
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-Xpreprocessor", "-fopenmp"]
    assert f.include_dirs == [f"{HOMEBREW_ARM}/include"]
    assert f.library_dirs == [f"{HOMEBREW_ARM}/lib"]
    assert f.link_args == ["-lomp"]
    assert f.define_macros == []


def test_macos_x86_64_usr_local_libomp():
    f = bf.build_flags("darwin", "x86_64", "apple-clang", {}, _libomp_at(HOMEBREW_INTEL))
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-Xpreprocessor", "-fopenmp"]
    assert f.include_dirs == [f"{HOMEBREW_INTEL}/include"]
    assert f.library_dirs == [f"{HOMEBREW_INTEL}/lib"]
    assert f.link_args == ["-lomp"]
    assert _no_isa_flags(f)


def test_macos_brew_prefix_comes_first():
    brew = "/opt/homebrew/Cellar/libomp/19.1.0"
    f = bf.build_flags("darwin", "arm64", "apple-clang", {}, _libomp_at(brew, HOMEBREW_ARM), brew_libomp=brew)
    assert f.include_dirs == [f"{brew}/include"] and f.library_dirs == [f"{brew}/lib"]


def test_macos_without_libomp_builds_without_openmp():
    f = bf.build_flags("darwin", "arm64", "apple-clang", {}, _nothing)
    assert f.compile_args == ["-O3", "-ffp-contract=off"]
    assert f.link_args == [] and f.include_dirs == [] and f.library_dirs == []


def test_macos_half_installed_libomp_is_not_used():
    headers_only = {f"{HOMEBREW_ARM}/include/omp.h"}.__contains__
    f = bf.build_flags("darwin", "arm64", "apple-clang", {}, headers_only)
    assert f.compile_args == ["-O3", "-ffp-contract=off"] and f.link_args == []


def test_libomp_prefix_override():
    env = {"IGNIS_LIBOMP_PREFIX": "/opt/libomp"}
    f = bf.build_flags("darwin", "arm64", "apple-clang", env, _libomp_at("/opt/libomp", HOMEBREW_ARM))
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-Xpreprocessor", "-fopenmp"]
    assert f.include_dirs == ["/opt/libomp/include"]
    assert f.library_dirs == ["/opt/libomp/lib"]
    assert f.link_args == ["-lomp"]


def test_libomp_prefix_override_pointing_nowhere_is_an_error():
    with pytest.raises(ValueError, match="IGNIS_LIBOMP_PREFIX=/nowhere"):
        bf.build_flags("darwin", "arm64", "apple-clang", {"IGNIS_LIBOMP_PREFIX": "/nowhere"},
                       _libomp_at(HOMEBREW_ARM))


@pytest.mark.parametrize("env", [{"IGNIS_ISA": "scalar"}, {"IGNIS_ISA": "SCALAR"}, {"IGNIS_PORTABLE": "1"}])
def test_scalar_build_forces_scalar(env):
    for platform, compiler in (("linux", "gcc"), ("darwin", "apple-clang")):
        f = bf.build_flags(platform, "x86_64", compiler, env, _nothing)
        assert f.define_macros == [("IGNIS_FORCE_SCALAR", "1")]
        assert f.compile_args[:2] == ["-O3", "-ffp-contract=off"]


@pytest.mark.parametrize("env", [{"IGNIS_ISA": "avx512"}, {"IGNIS_ISA": "avx2"}, {"IGNIS_ISA": "neon"},
                                 {"IGNIS_PORTABLE": "0"}, {"IGNIS_PORTABLE": ""}])
def test_other_isa_values_are_run_time_choices(env):
    f = bf.build_flags("linux", "x86_64", "gcc", env, _nothing)
    assert f.define_macros == []
    assert f.compile_args == ["-O3", "-ffp-contract=off", "-fopenmp"]


def test_windows_msvc():
    f = bf.build_flags("win32", "AMD64", "msvc", {}, _nothing)
    assert f.compile_args == ["/O2", "/fp:precise", "/openmp"]
    assert f.link_args == []
    f = bf.build_flags("win32", "AMD64", "msvc", {"IGNIS_ISA": "scalar"}, _nothing)
    assert f.define_macros == [("IGNIS_FORCE_SCALAR", "1")]


@pytest.mark.parametrize("cc, platform, family", [
    ("gcc", "linux", "gcc"),
    ("gcc -pthread", "linux", "gcc"),
    ("x86_64-linux-gnu-gcc -fno-strict-overflow", "linux", "gcc"),
    ("cc", "linux", "gcc"),
    ("ccache clang-18", "linux", "clang"),
    ("/usr/bin/clang", "linux", "clang"),
    ("clang", "darwin", "apple-clang"),
    ("cc", "darwin", "apple-clang"),
    ("gcc", "darwin", "apple-clang"),          # /usr/bin/gcc is Apple clang
    ("/opt/homebrew/bin/gcc-14", "darwin", "gcc"),
    ("", "win32", "msvc"),
    ("cl.exe", "win32", "msvc"),
    ("x86_64-w64-mingw32-gcc", "win32", "gcc"),
])
def test_compiler_family(cc, platform, family):
    assert bf.compiler_family(cc, platform) == family
