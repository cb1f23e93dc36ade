"""Failure report text: short dtypes and shapes, input summaries, mismatch tables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjpcheck._numerics import Tolerance, compare
from vjpcheck._report import (
    TABLE_ROWS,
    describe_inputs,
    mismatch_details,
    scalar_details,
    short_array,
    short_dtype,
)

TOLERANCE = Tolerance(rtol=0.01, atol=0.0, origin="rtol=0.01 set on the rule")
TOLERANCE_LINE = (
    "Tolerance: |obtained - expected| <= 0.01 * scale + 0, where scale is the magnitude "
    "of the terms behind each element (rtol=0.01 set on the rule)."
)

# ----------------------------------------------------------------------------------
# short_dtype, short_array, describe_inputs


@pytest.mark.parametrize(
    "dtype, short",
    [
        (np.float32, "f32"),
        (np.float64, "f64"),
        (np.float16, "f16"),
        (np.int32, "i32"),
        (np.int64, "i64"),
        (np.uint8, "u8"),
        (np.bool_, "bool"),
        ("float32", "f32"),
        (np.complex64, "complex64"),
        (jax.dtypes.float0, "float0"),
    ],
)
def test_short_dtype_names(dtype, short):
    assert short_dtype(dtype) == short


def test_short_dtype_bfloat16():
    assert short_dtype(jnp.bfloat16) == "bf16"


def test_short_array_bfloat16():
    assert short_array(jnp.zeros((3,), jnp.bfloat16)) == "bf16[3]"


def test_short_array_matrix():
    assert short_array(np.zeros((2, 3), np.float32)) == "f32[2,3]"


def test_short_array_integer_scalar():
    assert short_array(np.int32(4)) == "i32[]"
    assert short_array(np.array(4, np.int32)) == "i32[]"


def test_short_array_jax_array():
    assert short_array(jnp.ones((4,), jnp.float32)) == "f32[4]"


def test_short_array_float0():
    assert short_array(np.zeros((2,), jax.dtypes.float0)) == "float0[2]"


def test_short_array_without_dtype():
    assert short_array(1.5) == "float"
    assert short_array(None) == "NoneType"


def test_describe_inputs_lists_names_and_output():
    primals = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32), np.zeros((), np.int32)]

    text = describe_inputs(["W", "x", "label"], primals, (2,), np.float32)

    assert text == "W: f32[2,3], x: f32[3], label: i32[] -> f32[2]"


def test_describe_inputs_scalar_output():
    text = describe_inputs(["p"], [np.zeros(5, np.float64)], (), np.float64)

    assert text == "p: f64[5] -> f64[]"


# ----------------------------------------------------------------------------------
# mismatch_details


def test_mismatch_details_small_table():
    obtained = np.array([[1.0, 2.5], [3.0, 4.0]])
    expected = np.array([[1.0, 2.0], [3.0, 3.0]])
    comparison = compare(obtained, expected, np.full((2, 2), 0.1))

    text = mismatch_details("Cotangent for W", comparison, TOLERANCE)

    assert text.splitlines() == [
        "Cotangent for W: 2 of 4 elements differ.",
        TOLERANCE_LINE,
        "Max absolute error 1 at index (1, 1); max relative error 0.333333 at index (1, 1).",
        "  Index  | Obtained | Expected | Tolerance",
        "  (1, 1) | 4        | 3        | 0.1",
        "  (0, 1) | 2.5      | 2        | 0.1",
    ]


def test_mismatch_details_lists_hidden_rows():
    expected = np.ones(8)
    obtained = expected + np.array([0.7, 0.1, 0.6, 0.0, 0.5, 0.4, 0.3, 0.2])
    comparison = compare(obtained, expected, np.full(8, 0.05))

    text = mismatch_details("g", comparison, TOLERANCE)

    assert TABLE_ROWS == 5
    assert text.splitlines() == [
        "g: 7 of 8 elements differ.",
        TOLERANCE_LINE,
        "Max absolute error 0.7 at index (0,); max relative error 0.7 at index (0,).",
        "  Index | Obtained | Expected | Tolerance",
        "  (0,)  | 1.7      | 1        | 0.05",
        "  (2,)  | 1.6      | 1        | 0.05",
        "  (4,)  | 1.5      | 1        | 0.05",
        "  (5,)  | 1.4      | 1        | 0.05",
        "  (6,)  | 1.3      | 1        | 0.05",
        "  ... and 2 more",
    ]


def test_mismatch_details_exactly_table_rows():
    expected = np.zeros(TABLE_ROWS)
    obtained = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    comparison = compare(obtained, expected, np.full(TABLE_ROWS, 0.5))

    text = mismatch_details("x", comparison, TOLERANCE)

    assert text.splitlines() == [
        "x: 5 of 5 elements differ.",
        TOLERANCE_LINE,
        "Max absolute error 5 at index (0,); max relative error inf at index (0,).",
        "  Index | Obtained | Expected | Tolerance",
        "  (0,)  | 5        | 0        | 0.5",
        "  (1,)  | 4        | 0        | 0.5",
        "  (2,)  | 3        | 0        | 0.5",
        "  (3,)  | 2        | 0        | 0.5",
        "  (4,)  | 1        | 0        | 0.5",
    ]


def test_mismatch_details_nan_obtained():
    comparison = compare(np.array([1.0, np.nan]), np.array([1.0, -2.0]), np.array([0.1, 0.1]))

    text = mismatch_details("b", comparison, TOLERANCE)

    assert text.splitlines() == [
        "b: 1 of 2 elements differ.",
        TOLERANCE_LINE,
        "Max absolute error inf at index (1,); max relative error inf at index (1,).",
        "  Index | Obtained | Expected | Tolerance",
        "  (1,)  | nan      | -2       | 0.1",
    ]


def test_mismatch_details_scalar():
    comparison = compare(np.array(2.0), np.array(-0.5), np.array(1e-6))

    text = mismatch_details("loss", comparison, TOLERANCE)

    assert text.splitlines() == [
        "loss: 1 of 1 elements differ.",
        TOLERANCE_LINE,
        "Max absolute error 2.5 at index (); max relative error 5 at index ().",
        "  Index | Obtained | Expected | Tolerance",
        "  ()    | 2        | -0.5     | 1e-06",
    ]


def test_mismatch_details_small_numbers():
    expected = np.array([[0.0, 1.23456789e-7, 3.0]])
    obtained = np.array([[0.0, -1.5e-7, 3.0000001]])
    comparison = compare(obtained, expected, np.array(1e-9))

    text = mismatch_details("dx", comparison, TOLERANCE)

    assert text.splitlines() == [
        "dx: 2 of 3 elements differ.",
        TOLERANCE_LINE,
        "Max absolute error 2.73457e-07 at index (0, 1); "
        "max relative error 2.215 at index (0, 1).",
        "  Index  | Obtained | Expected    | Tolerance",
        "  (0, 1) | -1.5e-07 | 1.23457e-07 | 1e-09",
        "  (0, 2) | 3        | 3           | 1e-09",
    ]


def test_scalar_details_text():
    text = scalar_details("<u, J h>", 1.5, 1.25, 0.125, TOLERANCE)

    assert text.splitlines() == [
        "<u, J h>: obtained 1.5, expected 1.25, difference 0.25 > bound 0.125.",
        TOLERANCE_LINE,
    ]
