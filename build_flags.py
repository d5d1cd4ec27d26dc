"""Compiler and linker flags for the extension modules, as a pure function.

build_flags() sees the system only through its arguments, so tests can ask what a
macOS, Linux or Windows build would get (setup.py passes the real values).

- No ISA flags (-m..., -march): ignis/_neon.h compiles every SIMD level itself
  (target attributes) and picks one at import, so the build machine's CPU does not
  matter.
- Optimise, and never contract a*b+c into fused multiply-adds (-ffp-contract=off,
  MSVC /fp:precise): the scalar reference code is defined without them.
- OpenMP: -fopenmp for gcc and clang; Apple clang has no OpenMP runtime of its own,
  so -Xpreprocessor -fopenmp with libomp's headers and -lomp when libomp is found
  (IGNIS_LIBOMP_PREFIX, then Homebrew's prefix), otherwise no OpenMP at all (the
  kernels then run on one thread).
- IGNIS_ISA=scalar (or its older alias IGNIS_PORTABLE=1) defines IGNIS_FORCE_SCALAR:
  portable C only. Other IGNIS_ISA values are run-time choices, ignored here.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Callable, Mapping

# Where Homebrew puts libomp (Apple silicon, then Intel), after any `brew --prefix libomp`.
LIBOMP_CANDIDATES = ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp")


@dataclass
class BuildFlags:
    compile_args: list = field(default_factory=list)
    link_args: list = field(default_factory=list)
    define_macros: list = field(default_factory=list)
    include_dirs: list = field(default_factory=list)
    library_dirs: list = field(default_factory=list)


def compiler_family(cc: str, platform: str) -> str:
    """"gcc", "clang", "apple-clang" or "msvc" for a compiler command such as $CC or
    sysconfig's CC ("gcc -pthread", "ccache clang", "x86_64-linux-gnu-gcc"); an empty
    command on Windows (no CC configured) means MSVC."""
    words = [w for w in cc.split() if PurePath(w).name not in ("ccache", "sccache")]
    name = PurePath(words[0]).name.lower() if words else ""
    if name.endswith(".exe"):
        name = name[:-4]
    if platform == "win32" and name in ("", "cl", "clang-cl"):
        return "msvc"
    if platform == "darwin":
        # cc, gcc and clang are all Apple clang there; a real gcc is gcc-NN (Homebrew).
        return "gcc" if name.startswith("gcc-") or "-gcc" in name else "apple-clang"
    return "clang" if "clang" in name else "gcc"


def _scalar_only(env: Mapping[str, str]) -> bool:
    return (env.get("IGNIS_ISA", "").strip().lower() == "scalar"
            or env.get("IGNIS_PORTABLE", "") not in ("", "0"))


def _find_libomp(env: Mapping[str, str], brew_libomp: str | None,
                 exists: Callable[[str], bool]) -> str | None:
    """The first prefix holding include/omp.h and lib/libomp.dylib. IGNIS_LIBOMP_PREFIX,
    when set, is the only one tried, and must hold them."""
    override = env.get("IGNIS_LIBOMP_PREFIX", "")
    candidates = [override] if override else [p for p in (brew_libomp, *LIBOMP_CANDIDATES) if p]
    for prefix in candidates:
        if exists(posixpath.join(prefix, "include", "omp.h")) and \
                exists(posixpath.join(prefix, "lib", "libomp.dylib")):
            return prefix
    if override:
        raise ValueError(f"IGNIS_LIBOMP_PREFIX={override}: no include/omp.h and lib/libomp.dylib there")
    return None


def build_flags(platform: str, machine: str, compiler: str, env: Mapping[str, str],
                exists: Callable[[str], bool], brew_libomp: str | None = None) -> BuildFlags:
    """The flags for one extension module.

    platform: sys.platform; machine: platform.machine() (no flag depends on it any more:
    the header compiles every ISA level);
    compiler: compiler_family(); env: the environment; exists(path) -> bool for the libomp
    probe; brew_libomp: `brew --prefix libomp` when the caller ran it.
    """
    flags = BuildFlags()
    if _scalar_only(env):
        flags.define_macros.append(("IGNIS_FORCE_SCALAR", "1"))
    if compiler == "msvc":
        flags.compile_args += ["/O2", "/fp:precise", "/openmp"]
        return flags
    flags.compile_args += ["-O3", "-ffp-contract=off"]
    if compiler == "apple-clang":
        prefix = _find_libomp(env, brew_libomp, exists)
        if prefix is not None:
            flags.compile_args += ["-Xpreprocessor", "-fopenmp"]
            flags.include_dirs.append(posixpath.join(prefix, "include"))
            flags.library_dirs.append(posixpath.join(prefix, "lib"))
            flags.link_args.append("-lomp")
    else:
        flags.compile_args.append("-fopenmp")
        flags.link_args.append("-fopenmp")
    return flags
