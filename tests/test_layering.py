"""The import graph of odesr, baselines and bench, read from the sources (AST, nothing imported):
no cycle, no import of a higher layer (:mod:`bench.layers`), no import of another module's
private (``_name``) names. Function-local imports and those under ``if TYPE_CHECKING:`` count; a
module reading its own package's ``__init__`` (``from odesr import __version__``) does not."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from bench.layers import LAYERS, ORDER

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("odesr", "baselines", "bench")
SKIP_DIRS = ("experiments",)  # data, not code


@dataclass(frozen=True)
class Import:
    """One import of a module of ``PACKAGES`` by another: what, where, which names."""

    source: str
    target: str
    line: int
    local: bool  # inside a function (or under TYPE_CHECKING)
    names: tuple[str, ...] = ()  # the names taken (from ... import NAMES), or attributes read


def package_sources(root: Path = REPO, packages=PACKAGES) -> dict[str, tuple[str, bool]]:
    """``{module: (source, is_package)}`` of every ``.py`` file under ``packages``."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            if any(part in SKIP_DIRS for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            out[".".join(parts)] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, source: str, is_pkg: bool, known: set[str]) -> list[Import]:
    """The imports of ``module`` of modules in ``known`` (``from pkg import mod`` is an import
    of ``pkg.mod``), with the names taken and the private attributes read off imported
    modules (``mod._name``)."""
    tree = ast.parse(source)
    out: list[Import] = []
    bound: dict[str, tuple[str, int, bool]] = {}  # local name -> module it is bound to

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = True
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name in known:
                        out.append(Import(module, alias.name, child.lineno, local))
                        if alias.asname:
                            bound[alias.asname] = (alias.name, child.lineno, local)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, is_pkg, child)
                plain = []
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    if sub in known:
                        out.append(Import(module, sub, child.lineno, local))
                        bound[alias.asname or alias.name] = (sub, child.lineno, local)
                    else:
                        plain.append(alias.name)
                if plain and target in known:
                    out.append(Import(module, target, child.lineno, local, tuple(plain)))
            visit(child, inner)

    visit(tree, False)
    for node in ast.walk(tree):  # mod._name on a module bound by an import
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and _private(node.attr)
        ):
            target, _, local = bound[node.value.id]
            out.append(Import(module, target, node.lineno, local, (node.attr,)))
    return out


def import_graph(sources: dict[str, tuple[str, bool]]) -> list[Import]:
    """Every import between the modules of ``sources``, less a module's imports of its own
    package's ``__init__`` (its ``__version__``, ...)."""
    known = set(sources)
    edges = []
    for module, (source, is_pkg) in sources.items():
        for imp in imports_of(module, source, is_pkg, known):
            if imp.target != module and not module.startswith(imp.target + "."):
                edges.append(imp)
    return edges


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _cycle_text(comp: list[str], edges: list[Import]) -> str:
    inside = [e for e in edges if e.source in comp and e.target in comp]
    links = sorted({f"{e.source} -> {e.target} (line {e.line})" for e in inside})
    return f"{' / '.join(comp)}: " + "; ".join(links)


def layer_map(layers: dict[str, tuple[str, ...]] = LAYERS) -> dict[str, str]:
    return {m: layer for layer, names in layers.items() for m in names}


def layer_rank(module: str, layers: dict[str, tuple[str, ...]] = LAYERS) -> int | None:
    top = module.split(".")[0]
    if top in ("odesr", "baselines"):
        return ORDER.index(top)
    layer = layer_map(layers).get(module)
    return None if layer is None else ("odesr", "baselines", *layers).index(layer)


# cycles known and owned elsewhere, each with why it is left: the test fails when one is gone,
# so that its entry goes too
PENDING_CYCLES: dict[tuple[str, ...], str] = {}


def problems(
    sources: dict[str, tuple[str, bool]],
    layers: dict[str, tuple[str, ...]] = LAYERS,
    pending: dict[tuple[str, ...], str] | None = None,
) -> list[str]:
    """Every violation, one line each: an unlisted or stale bench module, a cycle, an upward
    import, a private name taken from another module."""
    edges = import_graph(sources)
    out = []
    listed = layer_map(layers)
    for module in sorted(sources):
        if module.split(".")[0] == "bench" and module not in listed:
            out.append(
                f"unlisted: {module} has no layer; add it to bench/layers.py LAYERS "
                f"({', '.join(layers)})"
            )
    for module in sorted(set(listed) - set(sources)):
        out.append(f"stale: bench/layers.py lists {module}, which does not exist")
    for comp in cycles(edges):
        if tuple(comp) not in (pending or {}):
            out.append("cycle: " + _cycle_text(comp, edges))
    names = ("odesr", "baselines", *layers)
    for e in edges:
        low, high = layer_rank(e.source, layers), layer_rank(e.target, layers)
        if low is not None and high is not None and high > low:
            where = "inside a function" if e.local else "at module level"
            out.append(
                f"upward: {e.source} ({names[low]}) imports {e.target} ({names[high]}) "
                f"{where}, line {e.line}"
            )
        private = [n for n in e.names if _private(n)]
        if private:
            out.append(
                f"private: {e.source} line {e.line} takes {', '.join(private)} of {e.target}; "
                "make it public (a docstring) in the module that owns it"
            )
    return out


def test_the_import_graph_has_no_cycle_no_upward_and_no_private_import():
    found = problems(package_sources(), pending=PENDING_CYCLES)
    assert not found, "\n".join(found)


def test_pending_cycles_are_still_there():
    gone = set(PENDING_CYCLES) - {tuple(c) for c in cycles(import_graph(package_sources()))}
    assert not gone, f"no longer cycles, remove them from PENDING_CYCLES: {sorted(gone)}"


def test_every_layer_is_named_in_order():
    assert ORDER == ("odesr", "baselines", "core", "reports", "tools")
    listed = [m for names in LAYERS.values() for m in names]
    assert len(listed) == len(set(listed)), "a module listed in two layers"


def test_the_graph_sees_function_local_imports_and_whole_packages():
    edges = import_graph(package_sources())
    assert any(e.local for e in edges)
    sources = {e.source for e in edges}
    assert {"odesr.models", "baselines.fixed", "bench.runner"} <= sources


SYNTHETIC = {
    # a cycle, held by a function-local import: a.low -> a.mid -> a.low
    "bench.low": (
        "from bench.mid import helper\n\ndef f():\n    from bench.top import go\n",
        False,
    ),
    "bench.mid": ("def helper():\n    import bench.low\n", False),
    # a private name, two ways
    "bench.top": (
        "from bench.low import _secret\nfrom bench import mid\n\ndef go():\n"
        "    return mid._hidden\n",
        False,
    ),
    "bench.typed": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.top import go\n",
        False,
    ),
    "bench": ("__version__ = '1'\n", True),
    "bench.reader": ("from bench import __version__\nfrom . import low\n", False),
    "bench.stray": ("x = 1\n", False),
    "odesr.core": ("from bench.low import helper\n", False),
}
SYNTHETIC_LAYERS = {
    "core": ("bench", "bench.low", "bench.mid", "bench.typed", "bench.gone"),
    "reports": ("bench.top",),
    "tools": ("bench.reader",),
}


def test_the_checker_reports_each_kind_of_violation():
    found = problems(SYNTHETIC, SYNTHETIC_LAYERS)
    text = "\n".join(found)
    assert any(p.startswith("cycle: bench.low / bench.mid") for p in found), text
    assert "upward: bench.low (core) imports bench.top (reports) inside a function" in text
    assert "upward: bench.typed (core) imports bench.top (reports) inside a function" in text
    assert "upward: odesr.core (odesr) imports bench.low (core) at module level" in text
    assert "private: bench.top line 1 takes _secret of bench.low" in text
    assert "private: bench.top line 5 takes _hidden of bench.mid" in text
    assert "unlisted: bench.stray has no layer" in text
    assert "stale: bench/layers.py lists bench.gone" in text
    # a module reading its own package's __init__, and a relative import one layer down: fine
    assert not [p for p in found if "bench.reader" in p and "__version__" in p]
    assert not [p for p in found if p.startswith("upward: bench.reader")]
    edges = import_graph(SYNTHETIC)
    assert any(e.source == "bench.reader" and e.target == "bench.low" for e in edges)
    assert not any(e.target == "bench" for e in edges if e.source.startswith("bench."))
