"""The package's shape, read statically with ``ast``: short modules, short functions, and no
import cycles between raq's own modules."""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "raq"
PACKAGE = PACKAGE_DIR.name
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``raq.backends`` for a package's ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in MODULES.items()}


def shown(path: Path) -> str:
    return str(path.relative_to(PACKAGE_DIR.parents[1]))


def imported_modules(module: str, tree: ast.Module) -> dict[str, int]:
    """raq modules that ``module`` imports anywhere in its code (top level, in functions, under
    ``if TYPE_CHECKING:``), each with the line of its first import."""
    is_package = MODULES[module].name == "__init__.py"
    edges: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in MODULES and target != module:
            edges.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")  # the longest prefix that is one of raq's modules
                for end in range(len(parts), 0, -1):
                    if ".".join(parts[:end]) in MODULES:
                        add(".".join(parts[:end]), node.lineno)
                        break
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in MODULES else base, node.lineno)
    return edges


def import_graph() -> dict[str, dict[str, int]]:
    return {name: imported_modules(name, tree) for name, tree in TREES.items()}


def knots(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (each module reaches every other)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups, key=min)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle (a path back to its start) through each knot of modules."""
    return sorted(shortest_cycle(min(group), group, graph) for group in knots(graph))


def shortest_cycle(start: str, group: set[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path from ``start`` back to itself through ``group`` (breadth-first)."""
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    for node in queue:
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while (before := previous[path[-1]]) is not None:
                    path.append(before)
                return [*reversed(path), start]
            if target in group and target not in previous:
                previous[target] = node
                queue.append(target)
    raise AssertionError(f"{sorted(group)} is not a cycle")


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def test_modules_are_short():
    long = {shown(path): n for path in MODULES.values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(
        f"  {name}: {n} lines" for name, n in sorted(long.items()))


def test_functions_are_short():
    long = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"  {shown(MODULES[name])}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(sorted(long))


def test_no_import_cycles():
    graph = import_graph()
    found = []
    for group in knots(graph):
        cycle = shortest_cycle(min(group), group, graph)
        others = sorted(group - set(cycle))
        also = f" (also in this knot: {', '.join(others)})" if others else ""
        found.append(f"  {describe_cycle(cycle, graph)}{also}")
    assert not found, "import cycles between raq's modules:\n" + "\n".join(found)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"f": 5}, "f": {"e": 6}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert describe_cycle(["e", "f", "e"], graph) == "e (line 5) -> f (line 6) -> e"
    assert cycles({"a": {"b": 1}, "b": {}}) == []
    assert knots({"a": {"b": 1, "c": 2}, "b": {"a": 3}, "c": {"b": 4}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b": 1, "c": 2}, "b": {"a": 3}, "c": {"b": 4}}) == [["a", "b", "a"]]


def test_relative_and_absolute_imports_resolve():
    source = ("from . import records\nfrom .records import Answer\nimport raq.store\n"
              "def f():\n    from .errors import RaqError\n")
    edges = imported_modules("raq.analysis", ast.parse(source))
    assert edges == {"raq.records": 1, "raq.store": 3, "raq.errors": 5}


#: The package's layers, lowest first: a module imports only from its own layer or lower ones, so
#: data flows one way (records and settings -> storage and data -> backends -> the generator and
#: judge -> statistics -> reports -> the result type -> the study's phases -> the study -> the CLI).
LAYERS = (
    ("errors", "records", "metrics", "abstention", "prompts", "ranking", "ranking_text", "urls", "config_data",
     "config", "catalog", "environment", "memory", "progress"),
    ("store", "user_data", "dataset", "study_data", "models", "judge_ladder"),
    ("backends", "backends.base", "backends.llama_native", "backends.llama_decode", "backends.llama",
     "backends.llama_batched", "backends.openai_http", "backends.local_server", "backends.fake", "backends.factory"),
    ("generator", "judge", "judge_pointwise", "judge_pairwise", "judges"),
    ("stats", "power", "plackett_luce", "length_bias", "tradeoffs", "decision", "analysis", "judge_quality",
     "judge_accuracy", "unanswerable"),
    ("figures", "report", "report_decision", "report_unanswerable", "html_report", "report_judge_check"),
    ("results",),
    ("checks", "runs", "answering", "engine_ray", "judging", "judge_check"),
    ("pipeline",),
    ("", "cli", "__main__"),
)


def layer_of(module: str) -> int:
    name = module.removeprefix(PACKAGE).removeprefix(".")
    for number, layer in enumerate(LAYERS):
        if name in layer:
            return number
    raise AssertionError(f"{module} is in no layer of LAYERS: add it where it belongs")


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_upward_imports():
    graph = import_graph()
    upward = [f"  {shown(MODULES[a])}:{line} imports {b} (layer {layer_of(b)} above {layer_of(a)})"
              for a, targets in graph.items() for b, line in targets.items() if layer_of(b) > layer_of(a)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))
