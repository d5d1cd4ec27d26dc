"""The shape of the tree: no import cycle among ignis' modules (counting imports inside
functions), and no source file in ignis/ or fuzz/ over 800 lines."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 800


def _modules() -> dict:
    """{module name: path} of every .py and .pyx under ignis/."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "ignis")):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext not in (".py", ".pyx"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, ROOT)[:-len(ext)].split(os.sep)
            if stem == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(path: str, module: str, is_package: bool, modules=()) -> list:
    """Every (imported name, line) of a file, imports inside functions included: `import a.b`
    gives a.b; `from a import b` gives a.b when that is one of `modules`, else a. .pyx: its
    Python import lines (not cimport)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()

    def names_from(base, names, line):
        return [(f"{base}.{n}" if f"{base}.{n}" in modules else base, line) for n in names]

    out = []
    if path.endswith(".pyx"):
        for i, line in enumerate(text.splitlines(), 1):
            if "cimport" in line:
                continue
            m = re.match(r"\s*from\s+([\w.]+)\s+import\s+\(?([\w, ]+)", line)
            if m:
                out += names_from(m.group(1), [n.split()[0] for n in m.group(2).split(",") if n.strip()], i)
            elif re.match(r"\s*import\s+([\w.]+)", line):
                out.append((re.match(r"\s*import\s+([\w.]+)", line).group(1), i))
        return out
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(text, path)):        # ast.walk: inside functions too
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out += names_from(base, [alias.name for alias in node.names], node.lineno)
    return out


def import_graph() -> dict:
    """{module: {imported ignis module: first line}}. A package's own __init__ is not counted
    as imported by its submodules (Python runs it first, but they do not depend on it)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        edges = {}
        for name, line in _imported(path, module, path.endswith("__init__.py"), modules):
            if name in modules and name != module:
                edges.setdefault(name, line)
        graph[module] = edges
    return graph


def find_cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(graph: dict, comp: list) -> str:
    """One shortest cycle through the component's first module, with the importing lines."""
    inside, start = set(comp), comp[0]
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]]):
            if nxt == start:
                hops = path + [start]
                return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(hops, hops[1:])) + f" -> {start}"
            if nxt in inside and nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])
    return ", ".join(comp)


def test_no_import_cycle_among_ignis_modules():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + " | ".join(_describe(graph, c) for c in cycles)


def test_the_cycle_finder_sees_a_function_level_cycle(tmp_path):
    # the finder itself: a cycle closed by an import inside a function is found
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 9}, "d": {"a": 1}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    source = "def f():\n    from ignis.x import y\n"
    path = tmp_path / "m.py"
    path.write_text(source)
    assert ("ignis.x", 2) in _imported(str(path), "ignis.m", False)
    assert ("ignis.x.y", 2) in _imported(str(path), "ignis.m", False, {"ignis.x.y"})


def test_no_source_file_over_800_lines():
    long = []
    for top in ("ignis", "fuzz"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith((".py", ".pyx", ".pxi", ".h")):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8", errors="replace") as f:
                        n = sum(1 for _ in f)
                    if n > MAX_LINES:
                        long.append(f"{os.path.relpath(path, ROOT)} ({n} lines)")
    assert not long, "over 800 lines: " + ", ".join(long)
