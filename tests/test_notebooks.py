"""The notebooks are thin narratives: committed without outputs, a papermill parameters cell, one
setup call, then calls into alllib and display. Statistics and figures live in the library."""

import json

import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# what only library code may do: draw, compute statistics, define functions
FORBIDDEN = [
    "plt.subplots",
    "ax.",
    "np.",
    "scipy",
    "wilcoxon",
    "groupby",
    "def ",
    "lambda",
    "import numpy",
    "import pandas",
    "sns.",
    ".mean(",
    ".std(",
    ".quantile(",
    "[75:375",
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_a_thin_narrative(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "committed with outputs"
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell must be papermill's parameters"
    assert "notebook.setup(profile, overrides, data_dir, results_dir)" in "".join(code[1]["source"])
    for cell in code[1:]:
        src = "".join(cell["source"])
        for token in FORBIDDEN:
            assert token not in src, f"{path.name}: {token!r} belongs in alllib, not in a notebook cell"


def test_chapters_run_in_their_numbered_order():
    from alllib.study import runner

    chapters = [runner.DATA_NOTEBOOK, *runner.ANALYSIS_NOTEBOOKS]
    assert chapters == sorted(chapters)
    assert {p.stem for p in NOTEBOOKS} == set(chapters) | {runner.TRAIN_NOTEBOOK}
