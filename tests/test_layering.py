"""The import graph of alllib, lazy (function-level) imports included and imports for annotations only
(under `if TYPE_CHECKING:`, never run) left out: it has no cycle, every import
goes to the same layer of the package or a lower one (the layers follow the data's way: the method
of Section 4, the study machinery, the results, using the ensemble, the book, the evidence, the whole
pipeline), and its longest chain of imports is short."""

import ast

import pytest
from conftest import ROOT

# Lowest first. The modules at the package's root (errors, io, backup, provenance) are the foundation; the
# pipeline and the command line sit on top.
LAYERS = ("", "method", "study", "results", "use", "book", "evidence", "top")
TOP = {"alllib.pipeline", "alllib.__main__"}
MOST_FLOORS = 11  # the flat package had 13; 11 since io reports a failed write as a StudyError (io -> errors)


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in sorted((ROOT / "alllib").rglob("*.py"))}
    graph = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps = set()
        for node in runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    target = base + ("." + node.module if node.module else "")
                elif node.module and node.module.split(".")[0] == "alllib":
                    target = node.module
                else:
                    continue
                named = {f"{target}.{a.name}" for a in node.names} & files.keys()
                deps |= named or {target}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "alllib"}
        graph[mod] = {d for d in deps if d in files and d not in (mod, "alllib")}
    return graph


def runtime_nodes(tree):
    """Every node of `tree` except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from runtime_nodes(node)


def layer(mod: str) -> int:
    if mod in TOP:
        return LAYERS.index("top")
    parts = mod.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else 0


def floors(graph) -> dict[str, int]:
    depth = {}

    def visit(m, path):
        assert m not in path, "import cycle: " + " -> ".join(path + [m])
        if m not in depth:
            depth[m] = 1 + max((visit(d, path + [m]) for d in sorted(graph[m])), default=-1)
        return depth[m]

    for m in graph:
        visit(m, [])
    return depth


def test_import_graph_is_acyclic_and_short():
    depth = floors(import_graph())
    assert max(depth.values()) + 1 <= MOST_FLOORS, sorted(depth.items(), key=lambda kv: -kv[1])[:5]


def test_nothing_imports_a_higher_layer():
    upward = [
        f"{m} ({LAYERS[layer(m)] or 'root'}) imports {d} ({LAYERS[layer(d)]})"
        for m, deps in import_graph().items()
        for d in sorted(deps)
        if layer(d) > layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_the_layering_check_sees_a_cycle_and_an_upward_import():
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        floors({"a": {"b"}, "b": {"a"}})
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nelse:\n    import y\ndef f():\n    import z"
    )
    assert {a.name for n in runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names} == {"y", "z"}
    assert layer("alllib.method.training") < layer("alllib.study.runs") < layer("alllib.book.pages")
    assert layer("alllib.errors") == 0 and layer("alllib.pipeline") == len(LAYERS) - 1


def test_the_method_of_section_4_is_one_folder_and_imports_nothing_of_the_study():
    graph = import_graph()
    method = {m for m in graph if m.startswith("alllib.method.")}
    assert {m.rsplit(".", 1)[1] for m in method} == {
        "dataset",
        "preprocessing",
        "models",
        "training",
        "ensemble",
        "metrics",
    }
    for m in method:
        assert all(layer(d) <= layer(m) for d in graph[m]), (m, graph[m])


def test_the_runner_does_not_import_the_book():
    graph = import_graph()
    study = {m for m in graph if m.startswith("alllib.study.")}
    assert not any(d.startswith("alllib.book") for m in study for d in graph[m])


def test_each_step_of_section_4_lives_where_the_map_says():
    import importlib

    import alllib

    for section, what, where in alllib.SECTION_4:
        module, function = where.split(":")
        fn = getattr(importlib.import_module(module), function, None)
        assert callable(fn), (section, what, where)
        assert (fn.__doc__ or "").strip(), f"{where} has no docstring: the API reference would leave it out"
    steps = {where.split(":")[0] for section, _, where in alllib.SECTION_4 if section.startswith("4")}
    assert steps == {m for m in import_graph() if m.startswith("alllib.method.")}  # every method module, only them
    notes = (ROOT / "book" / "method.md").read_text()
    assert "{include} _generated/steps.md" in notes  # the method notes' table is SECTION_4's (pages.steps_markdown)
