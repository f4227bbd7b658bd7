"""The book's one rounding rule (alllib.rounding): half away from zero on the number as written, the same in
a table and in a sentence, against Python's decimal module applied by hand and against the cases where
format() and numpy disagree with each other."""

import ast
import json
import math
import re
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from alllib.rounding import fmt, half_up, pct, rounded


def test_half_way_values_round_away_from_zero_whatever_their_binary_form():
    # 0.8625 is stored a hair above, 0.4125 a hair below: format() splits them, numpy rounds 0.8625 to even
    assert f"{0.8625:.3f}" == "0.863" and f"{0.4125:.3f}" == "0.412" and np.round(0.8625, 3) == 0.862
    assert fmt(0.8625, 3) == "0.863" and fmt(0.4125, 3) == "0.413" and fmt(-0.8625, 3) == "-0.863"
    assert half_up(0.8625, 3) == 0.863 and half_up(2.5, 0) == 3.0 and half_up(-2.5, 0) == -3.0


@pytest.mark.parametrize("seed", range(3))
def test_fmt_is_decimal_half_up_of_the_written_number(seed):
    rng = np.random.default_rng(seed)
    for x in np.concatenate([rng.uniform(-2, 2, 300), np.round(rng.uniform(-1, 1, 300), 4)]):
        for d in (0, 1, 2, 3):
            want = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_UP)
            want = abs(want) if want == 0 else want
            assert fmt(x, d) == f"{want:.{d}f}"
            assert float(fmt(x, d)) == half_up(x, d)


def test_signs_percentages_and_missing_values():
    assert fmt(0.25, 1, sign=True) == "+0.3" and fmt(-0.25, 1, sign=True) == "-0.3" and fmt(0.0, 1, sign=True) == "+0.0"
    assert fmt(-0.0004, 3) == "0.000" and fmt(-0.04, 1, sign=True) == "+0.0"  # no negative zero
    assert pct(0.4125, 1) == "41.3%" and pct(0.5, 0) == "50%" and pct(-0.00049, 1) == "0.0%"
    assert fmt(float("nan"), 3) == "nan" and math.isnan(half_up(float("nan"), 2)) and half_up(None, 2) is None


def test_a_table_rounds_as_a_sentence_does():
    t = pd.DataFrame({"BA": [0.8625, 0.4125, np.nan], "n": [3, 4, 5], "name": ["a", "b", "c"]})
    r = rounded(t, 3)
    assert r["BA"].iloc[:2].tolist() == [0.863, 0.413] and math.isnan(r["BA"].iloc[2])
    assert r["n"].dtype == t["n"].dtype and r["name"].tolist() == ["a", "b", "c"]
    assert [fmt(v, 3) for v in t["BA"].iloc[:2]] == [str(v) for v in r["BA"].iloc[:2]]
    assert rounded(t, {"BA": 2})["BA"].iloc[0] == 0.86 and rounded(t["BA"], 1).iloc[1] == 0.4


# Where the book's numbers are written: every such module and every chapter notebook goes through the rule.
BOOK_FACING = ("alllib/book", "alllib/results", "alllib/evidence")
CONSOLE = {"alllib/book/browser.py"}  # pixel sizes for the terminal


def _fstring_specs(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            spec = "".join(v.value for v in node.format_spec.values if isinstance(v, ast.Constant))
            if re.fullmatch(r"\+?[,_]?\.\d+[f%]", spec):
                yield node.lineno, spec


def test_no_module_that_writes_the_book_s_numbers_rounds_by_format_or_pandas():
    found = []
    for folder in BOOK_FACING:
        for path in sorted((ROOT / folder).glob("*.py")):
            if str(path.relative_to(ROOT)) in CONSOLE:
                continue
            found += [f"{path.relative_to(ROOT)}:{n} ({spec})" for n, spec in _fstring_specs(path)]
            found += [
                f"{path.relative_to(ROOT)}:{n} (.round)"
                for n, line in enumerate(path.read_text().splitlines(), 1)
                if re.search(r"\.round\(\d", line)
            ]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code" and re.search(r"\.round\(|:\.\d[f%]\}", "".join(cell["source"])):
                found.append(f"{nb.name}: a cell rounds by itself")
    assert not found, found
