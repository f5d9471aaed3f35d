"""The packaged trainer's modules import each other without cycles.

Pins:
- no import cycle among `trainsmart_trainer`'s modules, counting every import statement: module level,
  inside functions and under `TYPE_CHECKING` alike (a cycle hidden behind a lazy import is still two
  modules that cannot be understood, or changed, one without the other);
- the graph is read from the source with `ast` (nothing is imported), and the reader really sees edges:
  relative and absolute forms, `from package import module`, and a known dependency of the loop;
- the cycle finder itself reports a planted cycle, so an empty answer means something.

Importing `a.b.c` also runs the `__init__` of `a.b`; that implicit step is not an edge here, or every
package that re-exports its submodules would count as a cycle with them.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

import trainsmart_trainer

PACKAGE = "trainsmart_trainer"
ROOT = Path(trainsmart_trainer.__file__).parent


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (packages by their `__init__`)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _absolute(module: str, node: ast.ImportFrom, modules: Mapping[str, Path]) -> str:
    """The module an `ImportFrom` names, with relative forms resolved against the importing module."""
    if node.level == 0:
        return node.module or ""
    is_package = modules[module].name == "__init__.py"
    base = module.split(".")
    anchor = base if is_package else base[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def imports_of(module: str, modules: Mapping[str, Path]) -> set[str]:
    """The package's modules that `module` imports anywhere in its source."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(modules[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node, modules)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in modules else source)
    return {target for target in targets if target in modules and target != module}


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    return {module: imports_of(module, modules) for module in modules}


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str] | None:
    """One import cycle as a path that starts and ends at the same module, or None (depth-first search)."""
    finished: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in finished and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        on_path.discard(module)
        finished.add(module)
        return None

    for start in sorted(graph):
        if start not in finished and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_trainer_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(module_files()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_absolute_relative_and_module_imports(tmp_path: Path) -> None:
    graph = import_graph(module_files())
    assert f"{PACKAGE}.resume" in graph[f"{PACKAGE}.loop"]  # `from trainsmart_trainer.resume import ...`
    assert f"{PACKAGE}.checkpoint" in graph[f"{PACKAGE}.loop"]  # `from trainsmart_trainer import checkpoint`
    assert f"{PACKAGE}.data.common" in graph[f"{PACKAGE}.data"]
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "top.py").write_text("from .sub import inner\n")
    (package / "sub" / "__init__.py").write_text("from . import inner\n")
    (package / "sub" / "inner.py").write_text("def later():\n    from ..top import later\n")
    planted = import_graph(module_files(package, "pkg"))
    assert planted == {
        "pkg": set(),
        "pkg.top": {"pkg.sub.inner"},
        "pkg.sub": {"pkg.sub.inner"},
        "pkg.sub.inner": {"pkg.top"},
    }
    assert find_cycle(planted) == ["pkg.sub.inner", "pkg.top", "pkg.sub.inner"]


def test_the_cycle_finder_reports_a_planted_cycle_and_passes_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
