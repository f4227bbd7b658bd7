"""The import graph of alllib, lazy (function-level) imports included, has no cycle: each module
holds one concept and nothing imports back up the pipeline."""

import ast

from conftest import ROOT


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((ROOT / "alllib").glob("*.py")):
        mod = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alllib"):
                deps.add(node.module.split(".")[1] if "." in node.module else "__init__")
        graph[mod] = deps - {mod}
    return graph


def test_import_graph_is_acyclic():
    graph = import_graph()
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join(path + [m])
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            visit(d, path + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_the_runner_and_the_book_do_not_import_each_other_through_the_study():
    graph = import_graph()
    assert "runner" not in graph["book"] and "runner" not in graph["study"] and "book" not in graph["study"]
    assert graph["training"] <= {"config", "errors", "models", "preprocessing", "provenance", "io"}
