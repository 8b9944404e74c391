"""The code's shape: module sizes, function lengths, imports between top-level packages, and import circles.

    python bench/structure.py [ROOT]

Prints, per top-level package (jobs, connectors, ...; the root package as "core" and "cli"), the modules, their lines and the largest; the
median and p90 length of functions and methods; the import arrows between packages (module-level and
lazy imports alike); and every circle between modules. Run it at two commits to compare.
"""
from __future__ import annotations

import ast
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

PACKAGES = ("pushpipe", "jobs", "schemas", "connectors", "sinks", "infra", "simulators", "gateway", "support", "console", "ingress")
# The root package holds both the bottom layer (settings, the jobs' liveness beats) and the top (the CLI, demo,
# reference producer): shown as two rooms, so that an arrow between packages says which layer it reaches.
CORE = ("pushpipe", "pushpipe.config", "pushpipe.liveness")
ROOMS = ("core", "jobs", "schemas", "connectors", "sinks", "infra", "simulators", "gateway", "support", "console", "ingress", "cli")


def modules(root: Path) -> dict[str, Path]:
    """Dotted name (pushpipe.jobs.fanout) -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join(parts if package == "pushpipe" else ("pushpipe", *parts))] = path
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return "core" if module in CORE else "cli"


def imports(tree: ast.Module, module: str, known: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if not node.level else ".".join(module.split(".")[: -node.level] + [node.module])
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        found |= {name for name in names if name in known and name != module}
    return found


def function_lengths(tree: ast.Module) -> list[int]:
    return [node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(root: Path) -> None:
    known = modules(root)
    graph: dict[str, set[str]] = {}
    lengths: dict[str, list[int]] = defaultdict(list)
    sizes: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name, path in known.items():
        text = path.read_text()
        tree = ast.parse(text)
        graph[name] = imports(tree, name, known)
        lengths[package_of(name)] += function_lengths(tree)
        sizes[package_of(name)].append((len(text.splitlines()), name))
    print(f"{'package':12} {'modules':>7} {'lines':>6} {'largest module':>34} {'functions':>9} {'median':>6} {'p90':>4}")
    every: list[int] = []
    for package in ROOMS:
        spans, mods = lengths[package], sorted(sizes[package], reverse=True)
        every += spans
        largest = f"{mods[0][1].split('.')[-1]} ({mods[0][0]})" if mods else "-"
        print(f"{package:12} {len(mods):7} {sum(n for n, _ in mods):6} {largest:>34} {len(spans):9} "
              f"{statistics.median(spans) if spans else 0:6} {p90(spans):4}")
    print(f"{'all':12} {len(known):7} {'':6} {'':>34} {len(every):9} {statistics.median(every):6} {p90(every):4}")
    arrows: Counter[tuple[str, str]] = Counter()
    for name, targets in graph.items():
        for target in targets:
            if package_of(name) != package_of(target):
                arrows[package_of(name), package_of(target)] += 1
    print("\nimports between packages (importer -> imported: module pairs)")
    for (source, target), n in sorted(arrows.items()):
        back = " (both ways)" if (target, source) in arrows else ""
        print(f"  {source:11} -> {target:11} {n:3}{back}")
    found = circles(graph)
    print(f"\nimport circles between modules: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))


def p90(values: list[int]) -> int:
    return sorted(values)[int(0.9 * (len(values) - 1))] if values else 0


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
