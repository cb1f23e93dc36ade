"""Failure report text: short shapes, the tolerance used, and an Index/Obtained/Expected table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from vjpcheck._numerics import Comparison, Tolerance

_SHORT_DTYPES = {
    "float16": "f16",
    "bfloat16": "bf16",
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint32": "u32",
    "bool": "bool",
}
TABLE_ROWS = 5


def short_dtype(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    if dtype == jax.dtypes.float0:
        return "float0"
    return _SHORT_DTYPES.get(dtype.name, dtype.name)


def short_array(value: Any) -> str:
    """Describe an array's dtype and shape the way JAX does, as in ``f32[2,3]``."""
    shape = ",".join(str(n) for n in np.shape(value))
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return f"{type(value).__name__}"
    return f"{short_dtype(dtype)}[{shape}]"


def describe_inputs(names: Sequence[str], primals: Sequence[Any], output_shape: Sequence[int], dtype: Any) -> str:
    inputs = ", ".join(f"{name}: {short_array(p)}" for name, p in zip(names, primals))
    output = f"{short_dtype(dtype)}[{','.join(str(n) for n in output_shape)}]"
    return f"{inputs} -> {output}"


def _format_index(index: tuple[int, ...]) -> str:
    if not index:
        return "()"
    return "(" + ", ".join(str(i) for i in index) + ("," if len(index) == 1 else "") + ")"


def _number(value: float) -> str:
    return f"{value:.6g}"


def mismatch_details(label: str, comparison: Comparison, tolerance: Tolerance) -> str:
    """Describe a failed elementwise comparison: counts, worst elements and a table."""
    error = comparison.error
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(
            comparison.expected != 0, error / np.abs(comparison.expected), np.where(error > 0, np.inf, 0.0)
        )
    size = comparison.obtained.size
    abs_index = np.unravel_index(int(np.argmax(error)), error.shape) if size else ()
    rel_index = np.unravel_index(int(np.argmax(relative)), relative.shape) if size else ()
    lines = [
        f"{label}: {comparison.count} of {size} elements differ.",
        f"Tolerance: {tolerance.describe()}.",
        f"Max absolute error {_number(error[abs_index])} at index {_format_index(tuple(int(i) for i in abs_index))}; "
        f"max relative error {_number(relative[rel_index])} at index {_format_index(tuple(int(i) for i in rel_index))}.",
    ]
    lines += _table(comparison, error)
    return "\n".join(lines)


def _table(comparison: Comparison, error: np.ndarray) -> list[str]:
    flat_order = np.argsort(-np.where(comparison.mismatched, error, -1.0), axis=None, kind="stable")
    rows = [("Index", "Obtained", "Expected", "Tolerance")]
    for flat in flat_order[:TABLE_ROWS]:
        index = np.unravel_index(int(flat), comparison.obtained.shape)
        if not comparison.mismatched[index]:
            break
        rows.append(
            (
                _format_index(tuple(int(i) for i in index)),
                _number(comparison.obtained[index]),
                _number(comparison.expected[index]),
                _number(comparison.bound[index]),
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    lines = ["  " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    hidden = comparison.count - (len(rows) - 1)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more")
    return lines


def scalar_details(label: str, obtained: float, expected: float, bound: float, tolerance: Tolerance) -> str:
    return "\n".join(
        [
            f"{label}: obtained {_number(obtained)}, expected {_number(expected)}, "
            f"difference {_number(abs(obtained - expected))} > bound {_number(bound)}.",
            f"Tolerance: {tolerance.describe()}.",
        ]
    )


def failure_header(rule_name: str, location: str, property_name: str, sentence: str, inputs: str) -> str:
    return "\n".join(
        [
            f"Rule {rule_name!r} ({location}) failed property {property_name!r}.",
            f"It should hold that {sentence}",
            f"Inputs: {inputs}",
        ]
    )
