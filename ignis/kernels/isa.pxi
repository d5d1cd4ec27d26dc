# ignis/kernels/isa.pxi -- which kernel level runs: the CPU's features, the levels this build
# has, and switching between them (process-wide). Included by ignis/_kernels.pyx.

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
