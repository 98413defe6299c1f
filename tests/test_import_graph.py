"""No import cycle in any of the four packages, type-only imports included; core imports no framework.

The graph is grimp's (the library behind import-linter): every ``import`` statement of each module,
at module level, inside functions and under ``if TYPE_CHECKING:`` alike.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("modelriver", "django_modelriver", "streamlit_modelriver", "gradio_modelriver")
FRAMEWORKS = ("django", "channels", "daphne", "streamlit", "gradio")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, exclude_type_checking_imports=False,
                             cache_dir=None)


def cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt) & modules))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    lines = []
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & set(component)):
            at = [d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)]
            lines.append(f"  {importer} -> {imported} (line {', '.join(map(str, at))})")
    return "\n".join(lines)


def test_the_graph_counts_type_only_imports(graph: grimp.ImportGraph) -> None:
    # modelriver/__init__.py imports modelriver.api only under TYPE_CHECKING (names load lazily)
    assert graph.direct_import_exists(importer="modelriver", imported="modelriver.api")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(graph: grimp.ImportGraph, package: str) -> None:
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    assert len(modules) > 1
    found = cycles(graph, modules)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_core_imports_no_framework(graph: grimp.ImportGraph) -> None:
    bad = sorted(
        (module, imported)
        for module in graph.find_children("modelriver") | graph.find_descendants("modelriver") | {"modelriver"}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.split(".")[0] in FRAMEWORKS or imported.split(".")[0] in PACKAGES[1:]
    )
    assert not bad, f"core imports a framework or an integration: {bad}"


@pytest.mark.parametrize("package", PACKAGES[1:])
def test_integrations_use_only_core_public_modules(graph: grimp.ImportGraph, package: str) -> None:
    # A private core module can change in any release; the integrations pin only core's minor series.
    modules = graph.find_descendants(package) | {package}
    bad = sorted(
        (module, imported)
        for module in modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("modelriver.") and any(p.startswith("_") for p in imported.split(".")[1:])
    )
    assert not bad, f"{package} imports private core modules: {bad}"
