"""Numbers as the report and the command line print them: one rule per kind of quantity.

The files of a results folder keep the exact values; what is printed is rounded to what
the value can claim, and a reader rounding the file's value the same way gets the printed
text. The kinds (:data:`KINDS`, named by ``columns.toml``'s ``[formats]``):

- ``integer``: whole numbers (counts, voxels, volumes) with thousands separators, ``12,345``;
- ``coordinate``: MNI mm, whole millimetres unless the value has a fraction (then 1 decimal);
- ``stat``: a map statistic (ALE, MKDA, a mean or a difference of them), 3 significant digits;
- ``z``: a z score, 2 decimals;
- ``share``: a share or proportion (Dice, contributions), 2 decimals;
- ``mm``: a length in mm (kernel FWHM), 2 decimals;
- ``percent``: a relative precision, ``±10 %``;
- ``threshold``: a value the user set (alpha, cluster-forming p), as written;
- ``p``: a p value (:func:`p_value`); Monte Carlo p at the floor of their run print as a bound;
- ``text``: printed as written (years, identifiers).

Counts in sentences take their noun's right form with :func:`count` (``1 cluster``, ``2 clusters``).
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

#: Kinds that are numbers (right-aligned in tables).
NUMERIC_KINDS = frozenset({"integer", "coordinate", "stat", "z", "share", "mm", "percent", "threshold", "p"})
#: Text a table prints for a boolean cell.
BOOLEANS = {"true": "yes", "false": "no"}


def _float(value) -> float | None:
    """``value`` as a float, or None when it is not a finite number (text, empty, NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def integer(value) -> str:
    """A whole number with thousands separators: ``3176.0`` -> ``3,176``."""
    return f"{round(float(value)):,}"


def decimals(value, places: int) -> str:
    """``value`` with ``places`` decimals (thousands separators): ``0.13695`` -> ``0.14`` for 2."""
    return f"{float(value):,.{places}f}"


def significant(value, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros kept: ``0.0540405`` -> ``0.0540``.

    Large values keep their whole digits (``1234.5`` -> ``1,235`` for 3 digits): a number is never
    printed with fewer integer digits than it has.
    """
    value = float(value)
    if value == 0:
        return "0"
    exponent = int(f"{value:.{digits - 1}e}".split("e")[1])  # of the rounded value: 0.00995 -> 0.0100 is e-2
    return decimals(value, max(digits - 1 - exponent, 0))


def coordinate(value) -> str:
    """An MNI coordinate in mm: ``-40`` as ``-40``, ``-40.5`` as ``-40.5``."""
    value = float(value)
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def percent(value) -> str:
    """A relative precision as a percentage: ``0.1`` -> ``±10 %``."""
    return f"±{float(value) * 100:g} %"


def threshold(value) -> str:
    """A value the user set, as written (``0.001``, ``0.05``)."""
    return f"{float(value):g}"


def p_floor_bound(n_null: int) -> tuple[str, bool]:
    """The bound printed for a Monte Carlo p at its floor, from ``n_null`` null draws.

    The smallest p a run of ``n`` draws can give is ``1 / (n + 1)`` (observed beyond every null
    value); the bound is that floor rounded up to one significant digit. Returns the bound's text
    and whether it lies strictly above the floor (then the report prints ``< bound``, else ``≤ bound``):
    2,000 draws -> (``0.0005``, True); 3,000 -> (``0.0004``, True); 1,999 -> (``0.0005``, False).
    """
    floor = Decimal(1) / Decimal(int(n_null) + 1)
    scale = Decimal(1).scaleb(floor.adjusted())
    bound = (floor / scale).to_integral_value(rounding=ROUND_CEILING) * scale
    return f"{bound.normalize():f}", bound > floor


def at_floor(p: float, n_null: int | None) -> bool:
    """Whether ``p`` is the smallest p of a run with ``n_null`` draws (``1 / n`` as NiMARE clips it, or
    ``1 / (n + 1)``): no null value reached the observed one, or (NiMARE's clip) at most one."""
    return bool(n_null) and float(p) * int(n_null) <= 1.0 + 1e-6


def p_value(p, n_null: int | None = None) -> str:
    """A p value as a paper prints it.

    At the floor of a Monte Carlo run of ``n_null`` draws (:func:`at_floor`): the bound of
    :func:`p_floor_bound`, ``< 0.0005``. Otherwise p >= 0.1 with 2 decimals (``0.37``), smaller p with 2
    significant digits (``0.012``, ``0.0050``).
    """
    p = float(p)
    if at_floor(p, n_null):
        bound, strict = p_floor_bound(n_null)
        return f"{'<' if strict else '≤'} {bound}"
    return decimals(p, 2) if p >= 0.1 else significant(p, 2)


#: Formatter of each kind: ``formatter(value, n_null)``.
KINDS = {
    "integer": lambda v, n: integer(v),
    "coordinate": lambda v, n: coordinate(v),
    "stat": lambda v, n: significant(v, 3),
    "z": lambda v, n: decimals(v, 2),
    "share": lambda v, n: decimals(v, 2),
    "mm": lambda v, n: decimals(v, 2),
    "percent": lambda v, n: percent(v),
    "threshold": lambda v, n: threshold(v),
    "p": lambda v, n: p_value(v, n),
}


def guess_kind(value) -> str:
    """The kind of a number no format names: ``integer`` when whole, else ``stat`` (3 significant digits)."""
    number = _float(value)
    if number is None:
        return "text"
    return "integer" if number == round(number) and abs(number) < 1e15 else "stat"


def cell(value, kind: str | None = None, n_null: int | None = None) -> str:
    """The text of one table cell or entry: ``value`` (a number, or its text in a file) printed as ``kind``.

    Text that is not a number is printed as written (booleans as yes / no, None as ``none``);
    ``kind`` None guesses from the value (:func:`guess_kind`).
    """
    if value is None:
        return "none"
    if isinstance(value, bool) or str(value).lower() in BOOLEANS:
        return BOOLEANS[str(value).lower()]
    kind = kind or guess_kind(value)
    if kind == "text" or _float(value) is None:
        return str(value)
    return KINDS[kind](float(value), n_null)


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """The noun for ``n`` things: ``plural(1, "cluster")`` -> ``cluster``, ``plural(2, "study", "studies")``
    -> ``studies``."""
    return singular if n == 1 else (plural_form or singular + "s")


def count(n: int, singular: str, plural_form: str | None = None) -> str:
    """``n`` things in words, thousands separated: ``1 cluster``, ``2 clusters``, ``12,000 foci``."""
    return f"{int(n):,} {plural(int(n), singular, plural_form)}"


__all__ = ["KINDS", "NUMERIC_KINDS", "at_floor", "cell", "coordinate", "count", "decimals", "guess_kind", "integer",
           "p_floor_bound", "p_value", "percent", "plural", "significant", "threshold"]
