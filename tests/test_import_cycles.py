"""The package has no import cycles: every module's imports, those inside functions included.

The layer contracts in pyproject.toml (checked by ``lint-imports`` in scripts/test.sh) keep
imports pointing down between folders; this test also catches a circle inside one folder.
"""

from __future__ import annotations

import grimp

from treasury.language.graph import strongly_connected


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Import circles: strongly connected components of more than one module.

    The search is the one that finds cycles between workflow steps (Tarjan, iterative).
    """
    order = sorted(graph.modules)
    deps = {module: set(graph.find_modules_directly_imported_by(module)) for module in order}
    return sorted(sorted(c) for c in strongly_connected(order, deps) if len(c) > 1)


def test_the_cycle_finder_sees_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_treasury_has_no_import_cycles() -> None:
    graph = grimp.build_graph("treasury", exclude_type_checking_imports=True)
    assert _cycles(graph) == []
