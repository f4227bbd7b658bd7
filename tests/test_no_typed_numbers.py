"""No number in the book's prose is typed in. A markdown cell of a chapter notebook, or a sentence
that `alllib.book.report` builds, may hold a number only as a reference (Section 4.2, Table 4, Fig. 5,
Eq. 1), inside a name (C-NMC-2019, VGG-16), in code or maths, or as one of the paper's own values,
each listed here with where the paper gives it. Every other number is computed by the code that
prints it: a typed "five seeds" is false for a two-seed build."""

import ast
import json
import re

import pytest
from conftest import ROOT

from alllib.study.profile import SIZES

REFERENCE = re.compile(
    r"\b(?:Sections?|Tables?|Figs?\.|Figures?|Eqs?\.|Equations?)\s*\d+(?:\.\d+)*"
    r"(?:\s*(?:-|–|and|,)\s*\d+(?:\.\d+)*)*"
)
NUMBER = re.compile(
    r"(?<![\w.\\-])(\d+(?:\.\d+)?|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)(?![\w])", re.I
)
# The paper's values that prose may quote: the two input sizes of Section 4.1.2 (the study's SIZES).
PAPER_VALUES = {
    str(s): "an input size of the paper (Section 4.1.2: 450 x 450 images, a 300 x 300 centre crop)" for s in SIZES
}


def typed_numbers(text: str) -> list[str]:
    text = REFERENCE.sub(" ", text)
    text = re.sub(r"`[^`]*`", " ", text)  # code names code
    text = re.sub(r"\$[^$]*\$", " ", text)  # maths
    return [n for n in NUMBER.findall(text) if n not in PAPER_VALUES]


def test_the_scanner_finds_typed_numbers_and_lets_references_pass():
    assert typed_numbers("Every backbone is trained with five seeds (Table 5, Fig. 7-9, Section 4.1.3).") == ["five"]
    assert typed_numbers("Hem oversampled to 5822, 11644 images per epoch") == ["5822", "11644"]
    assert typed_numbers("VGG-16 on C-NMC-2019 at 300 px and 450 px; `python -m alllib` and $W_1$") == []


def test_the_paper_values_are_the_paper_s():
    paper = next((ROOT.parent / "shared" / "paper").glob("*.txt"), None)
    if paper is None:
        pytest.skip("../shared/paper is not beside this checkout")
    text = paper.read_text()
    assert all(f"{v} x {v}" in text or f"{v}×{v}" in text or f"{v} × {v}" in text for v in PAPER_VALUES), PAPER_VALUES


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_no_markdown_cell_types_a_number(notebook):
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    found = {i: typed_numbers("".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"}
    assert not {i: n for i, n in found.items() if n}, f"{notebook}: typed numbers in markdown cells {found}"


def _literal_parts(tree):
    """The text of every string a function of the module builds (f-string literal parts and plain
    strings), docstrings left out."""
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.Module, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def test_no_sentence_of_report_types_a_number():
    tree = ast.parse((ROOT / "alllib" / "book" / "report.py").read_text())
    found = [(line, typed_numbers(text)) for line, text in _literal_parts(tree)]
    assert not [f for f in found if f[1]], [f for f in found if f[1]]
