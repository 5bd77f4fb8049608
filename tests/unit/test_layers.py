"""The house in layers, read from the source: every import of every module of orderrelay (those inside functions
too, for they run as well), resolved to the module it names, checked against the layers below.

A module may import from its own layer and from those beneath it, never from one above; no chain of imports
comes back to where it started; and the repository's folders are imported only as ``orderrelay.<folder>``,
the one import name an installation adds.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Bottom first. The foundation imports nothing of ours above it; the edges are what people run.
LAYERS = (
    ("foundation", ("orderrelay", "orderrelay.foundation")),
    ("schemas", ("orderrelay.schemas",)),
    ("providers", ("orderrelay.providers",)),
    ("config", ("orderrelay.config",)),
    ("store", ("orderrelay.store",)),
    ("core", ("orderrelay.core",)),
    ("worker", ("orderrelay.worker",)),
    ("tasks", ("orderrelay.tasks",)),
    ("edges", ("orderrelay.cli", "orderrelay.producer", "orderrelay.api", "orderrelay.sandbox", "orderrelay.tools")),
)
FOLDERS = {
    "orderrelay": "orderrelay",
    **{f"orderrelay.{n}": n for n in ("api", "config", "schemas", "providers", "tasks", "worker", "store", "sandbox")},
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = modules()


def layer(module: str) -> int:
    best = max(
        (
            (len(prefix), number)
            for number, (_, prefixes) in enumerate(LAYERS)
            for prefix in prefixes
            if module == prefix or module.startswith(prefix + ".")
        ),
        default=None,
    )
    assert best is not None, f"{module} is in no layer"
    return best[1]


def imports(module: str) -> set[str]:
    """The modules of ours that ``module`` imports, wherever in it the import stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    named = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])]
                )
            for alias in node.names:
                named.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in named if name in MODULES or name.split(".")[0] in BARE}


BARE = {folder for folder in FOLDERS.values() if folder != "orderrelay"} | {"tests"}
GRAPH = {module: imports(module) for module in MODULES}


def test_the_folders_are_imported_by_the_one_import_name():
    bare = {module: sorted(n for n in names if n.split(".")[0] in BARE) for module, names in GRAPH.items()}
    assert {module: names for module, names in bare.items() if names} == {}


GRAPH = {module: names & MODULES.keys() for module, names in GRAPH.items()}


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any of more than one module is a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([*component, node]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_runs_up_a_layer():
    assert upward(GRAPH) == []


def test_no_circle_of_imports():
    assert circles(GRAPH) == []


def test_the_checks_see_an_upward_import_and_a_circle():
    """The two checks can fail: the module that imports the pipeline from the store, and a circle of three."""
    graph = {**GRAPH, "orderrelay.store.orders": GRAPH["orderrelay.store.orders"] | {"orderrelay.core.pipeline"}}
    assert upward(graph) == ["orderrelay.store.orders (store) imports orderrelay.core.pipeline (core)"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "orderrelay.foundation.errors" in GRAPH["orderrelay.store.orders"]  # the graph holds real edges


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        (
            "orderrelay.producer",
            ("aiohttp", "psycopg", "orderrelay.core.pipeline", "orderrelay.store", "orderrelay.api"),
        ),
        ("orderrelay.foundation.vault", ("orderrelay.config", "orderrelay.providers", "orderrelay.schemas")),
    ],
)
def test_a_module_loads_only_what_it_uses(module, absent):
    """Imported alone in a fresh interpreter, the producer brings no HTTP client, database driver or pipeline."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
        ).stdout.split()
    )
    assert [name for name in loaded if name.split(".")[0] in absent or any(name.startswith(a) for a in absent)] == []
