"""Why `import ignis` failed when it did: a source tree whose Cython extensions are not built.
Running `python` from the repository root puts the source tree ahead of an installed ignis on
sys.path, and the tree holds the .pyx files but not the compiled modules."""
import importlib.machinery
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def unbuilt_extensions() -> list:
    """Dotted names of the extensions whose .pyx sits in this package without a compiled module
    beside it."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    missing = []
    for pyx in sorted(PACKAGE.rglob("_*.pyx")):
        if not any(pyx.with_suffix(suffix).exists() for suffix in suffixes):
            missing.append(".".join(pyx.relative_to(PACKAGE.parent).with_suffix("").parts))
    return missing


def source_tree_message() -> str | None:
    """One line saying what to do, or None if every extension is built (the failure is something else)."""
    missing = unbuilt_extensions()
    if not missing:
        return None
    return (f"ignis: {PACKAGE} is a source tree whose compiled extensions are not built "
            f"({', '.join(missing)} missing). Run Python from outside the source tree to use the "
            f"installed ignis, or build in place: `python setup.py build_ext --inplace` (or `pip install -e .`)")
