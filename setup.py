"""Build the Cython extensions: every ignis/**/_*.pyx becomes one extension module.

Flags (chosen by build_flags.py): -O3 and -ffp-contract=off everywhere (the scalar
reference must not get fused multiply-adds), OpenMP where the compiler has it (Apple
clang: only with Homebrew's libomp, else a single-threaded build), and no -m/-march ISA
flags: ignis/_neon.h compiles every SIMD level itself and picks one at import.
IGNIS_ISA=scalar (alias IGNIS_PORTABLE=1) builds the portable C code only.
"""
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from build_flags import build_flags, compiler_family  # noqa: E402


def _brew_libomp():
    """`brew --prefix libomp` on macOS when Homebrew is there, else None."""
    brew = shutil.which("brew") if sys.platform == "darwin" else None
    if not brew:
        return None
    try:
        out = subprocess.run([brew, "--prefix", "libomp"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _flags():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or ""
    return build_flags(sys.platform, platform.machine(), compiler_family(cc, sys.platform),
                       os.environ, os.path.exists, brew_libomp=_brew_libomp())


def _extensions() -> list:
    flags = _flags()
    # the C headers (the kernel levels): a change there must rebuild the extension
    headers = sorted(str(h.relative_to(ROOT)) for h in (ROOT / "ignis").rglob("*.h"))
    exts = []
    for pyx in sorted((ROOT / "ignis").rglob("_*.pyx")):
        rel = pyx.relative_to(ROOT)
        name = ".".join(rel.with_suffix("").parts)
        exts.append(Extension(
            name, [str(rel)], depends=headers,
            include_dirs=[np.get_include(), "ignis", *flags.include_dirs],
            library_dirs=flags.library_dirs,
            extra_compile_args=flags.compile_args,
            extra_link_args=flags.link_args,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"), *flags.define_macros],
        ))
    return exts


setup(ext_modules=cythonize(
    _extensions(), language_level=3,
    compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
))
