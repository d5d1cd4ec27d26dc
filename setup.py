"""Build the Cython extensions: every ignis/**/_*.pyx becomes one extension module.

Flags: -O3 and OpenMP everywhere; on x86-64 AVX2/FMA/F16C when the build machine
has them (set IGNIS_PORTABLE=1 for a scalar-only build that runs on any x86-64);
NEON is baseline on aarch64 and needs no flag.
"""
import os
import platform
import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile_args() -> list:
    args = ["-O3", "-fopenmp", "-ffp-contract=off"]
    machine = platform.machine().lower()
    portable = os.environ.get("IGNIS_PORTABLE", "") not in ("", "0")
    if machine in ("x86_64", "amd64") and not portable:
        have = _cpu_flags()
        if {"avx2", "fma", "f16c"} <= have or not have:
            args += ["-mavx2", "-mfma", "-mf16c"]
    return args


def _extensions() -> list:
    exts = []
    for pyx in sorted((ROOT / "ignis").rglob("_*.pyx")):
        rel = pyx.relative_to(ROOT)
        name = ".".join(rel.with_suffix("").parts)
        exts.append(Extension(
            name, [str(rel)],
            include_dirs=[np.get_include(), "ignis"],
            extra_compile_args=_compile_args(),
            extra_link_args=["-fopenmp"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        ))
    return exts


setup(ext_modules=cythonize(
    _extensions(), language_level=3,
    compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
))
