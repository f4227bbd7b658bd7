"""One rounding rule for every number the book prints: half away from zero, applied to the number as it is
written (its shortest decimal form, Python's `repr`), so that 0.8625 reads 0.863 in every table and every
sentence.

Python's `format` rounds the binary value (0.8625 is stored as 0.86250000000000004…, so it prints 0.863, but
0.4125 is stored as 0.41249999999999997… and prints 0.412), and numpy's and pandas' `round` scale the binary
value and round half to even (0.8625 to three places is 0.862). Two tables of one value could disagree;
through `fmt`, `pct` and `rounded` they cannot.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal


def _decimal(x: float, digits: int) -> Decimal:
    return Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def half_up(x, digits: int):
    """`x` rounded to `digits` places, half away from zero on its decimal form; NaN, infinities and None
    pass through."""
    if x is None or not math.isfinite(float(x)):
        return x
    return float(_decimal(x, digits))


def fmt(x, digits: int, sign: bool = False) -> str:
    """`x` written with `digits` places under the book's rule (`sign`: a leading + on a positive number)."""
    if x is None:
        return "nan"
    if not math.isfinite(float(x)):
        return f"{float(x):{'+' if sign else ''}.{digits}f}"
    d = _decimal(x, digits)
    if d == 0:
        d = abs(d)  # no "-0.000"
    text = f"{d:.{digits}f}"
    return f"+{text}" if sign and d >= 0 else text  # as format's "+": zero is "+0.0"


def pct(x, digits: int) -> str:
    """The share `x` in percent, written with `digits` places under the book's rule (0.4125 -> 41.3% at 1)."""
    if x is None or not math.isfinite(float(x)):
        return f"{float('nan') if x is None else float(x):.{digits}%}"
    d = (Decimal(repr(float(x))) * 100).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{abs(d) if d == 0 else d:.{digits}f}%"


def rounded(frame, digits):
    """A DataFrame or Series with its floats rounded by `half_up` (integers, text and NaN as they are): what
    a table shows before it is written, in place of pandas' half-to-even `round`. `digits`: one number of
    places for every column, or a mapping of column to places (the other columns as they are)."""
    import pandas as pd

    def column(s: pd.Series, places) -> pd.Series:
        if places is None or not pd.api.types.is_float_dtype(s):
            return s
        return s.map(lambda v: half_up(v, places)).astype(s.dtype)

    if isinstance(frame, pd.Series):
        return column(frame, digits)
    places = digits.get if isinstance(digits, dict) else (lambda _name: digits)
    return frame.apply(lambda s: column(s, places(s.name)))
