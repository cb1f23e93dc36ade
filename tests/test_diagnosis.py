"""The diagnosis that names the likely mistake behind a mismatching cotangent.

The first half calls each detector in vjpcheck/_diagnosis.py on evidence built by hand.
The second half is a catalogue of wrong rules, one per mistake. For each, one test
checks that the property under test catches the mistake and that the failure report
names it, and another that the rule's correct twin passes the same property.
"""

import dataclasses
import itertools
import re
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import pytest

import vjpcheck as vc
from vjpcheck import _diagnosis as diagnosis
from vjpcheck._diagnosis import Evidence
from vjpcheck._steps import kink_hint
from vjpcheck._strategies import Example


def evidence(obtained, expected, name="x", **fields):
    return Evidence(
        name=name,
        obtained=np.asarray(obtained, np.float64),
        expected=np.asarray(expected, np.float64),
        **fields,
    )


# ----------------------------------------------------------------------------------
# missing_sum

# An output cotangent of shape (n, h) = (2, 3), as a batched op's bias receives it.
BATCH_COTANGENT = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_missing_sum_names_batch_slice():
    e = evidence(BATCH_COTANGENT[1], BATCH_COTANGENT.sum(axis=0), name="b", cotangent=BATCH_COTANGENT)
    assert diagnosis.missing_sum(e) == (
        "the cotangent for 'b' is slice 1 of the output cotangent along axis 0, where "
        "the sum over that axis belongs: a missing sum over a batch axis."
    )


def test_missing_sum_names_second_axis():
    e = evidence(BATCH_COTANGENT[:, 2], BATCH_COTANGENT.sum(axis=1), name="b", cotangent=BATCH_COTANGENT)
    assert diagnosis.missing_sum(e) == (
        "the cotangent for 'b' is slice 2 of the output cotangent along axis 1, where "
        "the sum over that axis belongs: a missing sum over a batch axis."
    )


def test_missing_sum_needs_cotangent():
    e = evidence(BATCH_COTANGENT[1], BATCH_COTANGENT.sum(axis=0), name="b")
    assert diagnosis.missing_sum(e) is None


def test_missing_sum_needs_sum_expected():
    # The obtained value is a slice, but the expected one is not the sum over that axis,
    # so the input is not a bias-like one.
    e = evidence(BATCH_COTANGENT[1], [1.0, 1.0, 1.0], name="b", cotangent=BATCH_COTANGENT)
    assert diagnosis.missing_sum(e) is None


def test_missing_sum_needs_slice_obtained():
    e = evidence(2 * BATCH_COTANGENT.sum(axis=0), BATCH_COTANGENT.sum(axis=0), name="b", cotangent=BATCH_COTANGENT)
    assert diagnosis.missing_sum(e) is None


# ----------------------------------------------------------------------------------
# sign_flipped


def test_sign_flipped_fires():
    e = evidence([-1.0, 2.0, -3.0], [1.0, -2.0, 3.0])
    assert diagnosis.sign_flipped(e) == "sign flipped: the cotangent for 'x' is minus the expected one."


def test_sign_flipped_skips_zero_expected():
    # Minus zero is zero, so any zero obtained value would look flipped.
    e = evidence([0.0, 0.0], [0.0, 0.0])
    assert diagnosis.sign_flipped(e) is None


def test_sign_flipped_skips_scaled_negative():
    e = evidence([-2.0, 4.0], [1.0, -2.0])
    assert diagnosis.sign_flipped(e) is None


# ----------------------------------------------------------------------------------
# transposed


def test_transposed_fires_on_square():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    e = evidence(expected.T, expected, name="W")
    assert diagnosis.transposed(e) == "the cotangent for 'W' is the transpose of the expected one."


def test_transposed_skips_symmetric_expected():
    # The obtained value is within the pattern tolerance of the transpose, but the
    # transpose of a symmetric matrix is the matrix itself.
    expected = np.array([[1.0, 2.0], [2.0, 3.0]])
    e = evidence(expected + np.array([[0.0, 1e-4], [0.0, 0.0]]), expected, name="W")
    assert diagnosis.transposed(e) is None


def test_transposed_skips_non_square():
    expected = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    e = evidence(expected.T, expected, name="W")
    assert diagnosis.transposed(e) is None


# ----------------------------------------------------------------------------------
# swapped


def test_swapped_names_other_input():
    e = evidence([4.0, 5.0], [1.0, 2.0], others={"y": np.array([4.0, 5.0])})
    assert diagnosis.swapped(e) == (
        "the cotangent returned for 'x' is the one expected for 'y': cotangents of two inputs swapped."
    )


def test_swapped_skips_equal_cotangents():
    # Both inputs expect the same cotangent, as for x + y, so a swap changes nothing.
    e = evidence([1.0, 2.0001], [1.0, 2.0], others={"y": np.array([1.0, 2.0])})
    assert diagnosis.swapped(e) is None


def test_swapped_skips_zero_other():
    e = evidence([0.0, 0.0], [1.0, 2.0], others={"y": np.array([0.0, 0.0])})
    assert diagnosis.swapped(e) is None


# ----------------------------------------------------------------------------------
# ignored_cotangent

# The expected cotangent 2 x g of x**2 at x = [1, 2] for the output cotangent [3, 0.5],
# and 2 x, the expected cotangent for an all-ones output cotangent.
SQUARE_EXPECTED = np.array([6.0, 2.0])
SQUARE_FOR_ONES = np.array([2.0, 4.0])


def test_ignored_cotangent_fires():
    e = evidence(SQUARE_FOR_ONES, SQUARE_EXPECTED, for_ones=SQUARE_FOR_ONES)
    assert diagnosis.ignored_cotangent(e) == (
        "the cotangent for 'x' is what an all-ones output cotangent would give: "
        "the rule ignores the incoming cotangent (or its scale)."
    )


def test_ignored_cotangent_skips_ones_cotangent():
    # With an all-ones output cotangent, ignoring it changes nothing.
    e = evidence(SQUARE_FOR_ONES * 1.0001, SQUARE_FOR_ONES, for_ones=SQUARE_FOR_ONES)
    assert diagnosis.ignored_cotangent(e) is None


def test_ignored_cotangent_needs_for_ones():
    e = evidence(SQUARE_FOR_ONES, SQUARE_EXPECTED)
    assert diagnosis.ignored_cotangent(e) is None


# ----------------------------------------------------------------------------------
# diagonal_only

# Softmax at x = [0, 0] for the output cotangent [1, 0]. The expected cotangent is
# s * (g - <s, g>), and s * (1 - s) * g keeps only the Jacobian's diagonal.
SOFTMAX_EXPECTED = np.array([0.25, -0.25])
SOFTMAX_DIAGONAL = np.array([0.25, 0.0])


def test_diagonal_only_fires():
    e = evidence(SOFTMAX_DIAGONAL, SOFTMAX_EXPECTED, diagonal_only=SOFTMAX_DIAGONAL)
    assert diagnosis.diagonal_only(e) == (
        "the cotangent for 'x' uses only the diagonal of the Jacobian: the off-diagonal "
        "terms (how each output depends on the other inputs) are missing."
    )


def test_diagonal_only_skips_elementwise_op():
    # An elementwise op's Jacobian is diagonal, so its diagonal term is the expected one.
    expected = np.array([3.0, 4.0])
    e = evidence(expected * 1.0001, expected, diagonal_only=expected)
    assert diagnosis.diagonal_only(e) is None


def test_diagonal_only_needs_diagonal():
    e = evidence(SOFTMAX_DIAGONAL, SOFTMAX_EXPECTED)
    assert diagnosis.diagonal_only(e) is None


# ----------------------------------------------------------------------------------
# extra_sum

EXTRA_SUM_EXPECTED = np.array([[1.0, 2.0], [3.0, 5.0]])


@pytest.mark.parametrize("axis", [0, 1])
def test_extra_sum_names_axis(axis):
    summed = np.broadcast_to(EXTRA_SUM_EXPECTED.sum(axis=axis, keepdims=True), EXTRA_SUM_EXPECTED.shape)
    e = evidence(summed, EXTRA_SUM_EXPECTED)
    assert diagnosis.extra_sum(e) == (
        f"the cotangent for 'x' is summed over axis {axis} and broadcast back: an extra sum over that axis."
    )


def test_extra_sum_skips_size_one_axis():
    # Summing over an axis of size 1 changes nothing.
    expected = np.array([[1.0, 2.0, 4.0]])
    e = evidence(expected * 1.0001, expected)
    assert diagnosis.extra_sum(e) is None


def test_extra_sum_skips_other_values():
    e = evidence(2 * EXTRA_SUM_EXPECTED, EXTRA_SUM_EXPECTED)
    assert diagnosis.extra_sum(e) is None


# ----------------------------------------------------------------------------------
# constant_factor


def test_constant_factor_names_factor():
    expected = np.array([1.0, -2.0, 4.0])
    e = evidence(2.5 * expected, expected, sizes={"n": 3, "d": 4})
    assert diagnosis.constant_factor(e) == (
        "off by a constant factor: the cotangent for 'x' is 2.5 times the expected one."
    )


def test_constant_factor_names_mean():
    expected = np.array([[1.0, -2.0], [4.0, 8.0]])
    e = evidence(expected / 4, expected, name="W", sizes={"h": 2, "n": 4})
    assert diagnosis.constant_factor(e) == (
        "the cotangent for 'W' is the expected one divided by 4, the size of dimension "
        "'n': a mean where the sum belongs."
    )


def test_constant_factor_names_size():
    expected = np.array([[1.0, -2.0], [4.0, 8.0]])
    e = evidence(3 * expected, expected, name="X", sizes={"d": 2, "n": 3})
    assert diagnosis.constant_factor(e) == (
        "the cotangent for 'X' is the expected one times 3, the size of dimension 'n': "
        "an extra sum, or a sum where the mean belongs."
    )


def test_constant_factor_skips_factor_one():
    expected = np.array([1.0, -2.0])
    e = evidence(expected * 1.0001, expected)
    assert diagnosis.constant_factor(e) is None


def test_constant_factor_skips_zero_expected():
    # Every factor times zero is zero.
    e = evidence([1.0, 2.0], [0.0, 0.0])
    assert diagnosis.constant_factor(e) is None


def test_constant_factor_skips_varying_ratio():
    e = evidence([2.0, 1.0], [1.0, 1.0])
    assert diagnosis.constant_factor(e) is None


# ----------------------------------------------------------------------------------
# zero


def test_zero_fires():
    e = evidence([0.0, 0.0], [1.0, 2.0])
    assert diagnosis.zero(e) == "the cotangent for 'x' is zero everywhere."


def test_zero_skips_zero_expected():
    e = evidence([0.0, 0.0], [0.0, 0.0])
    assert diagnosis.zero(e) is None


def test_zero_skips_nonzero_obtained():
    e = evidence([0.0, 1.0], [1.0, 2.0])
    assert diagnosis.zero(e) is None


# ----------------------------------------------------------------------------------
# diagnose


def test_diagnose_without_known_pattern():
    e = evidence([2.0, -1.0], [1.0, 2.0])
    assert diagnosis.diagnose(e) == "no known pattern."


def test_diagnose_prefers_sign_over_factor():
    # Minus the expected value is also -1 times it.
    e = evidence([-1.0, -2.0], [1.0, 2.0])
    assert diagnosis.diagnose(e) == "sign flipped: the cotangent for 'x' is minus the expected one."


def test_diagnose_prefers_missing_sum_over_zero():
    # Slice 0 of this output cotangent is zero, so the obtained value is zero too.
    cotangent = np.array([[0.0, 0.0], [1.0, 2.0]])
    e = evidence([0.0, 0.0], cotangent.sum(axis=0), name="b", cotangent=cotangent)
    assert diagnosis.diagnose(e) == (
        "the cotangent for 'b' is slice 0 of the output cotangent along axis 0, where "
        "the sum over that axis belongs: a missing sum over a batch axis."
    )


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"expected": [1.0, -1.0], "for_ones": np.zeros(2)}, id="for-ones-zero"),
        pytest.param({"expected": [1.0, 2.0], "diagonal_only": np.zeros(2)}, id="diagonal-zero"),
        pytest.param({"expected": [1.0, -1.0]}, id="sums-to-zero"),
    ],
)
def test_diagnose_names_zero_first(fields):
    e = evidence([0.0, 0.0], **fields)
    assert diagnosis.diagnose(e) == "the cotangent for 'x' is zero everywhere."


# ----------------------------------------------------------------------------------
# shape_hint


@pytest.mark.parametrize(
    ("obtained_shape", "expected_shape", "hint"),
    [
        pytest.param((3, 2), (2, 3), "It has the transposed shape: is the cotangent transposed?", id="transposed"),
        pytest.param(
            (4, 3), (3,),
            "Summing it over axis 0 gives the input's shape: is a sum over a batch or broadcast axis missing?",
            id="leading-axis",
        ),
        pytest.param(
            (5, 4, 3), (3,),
            "Summing it over axes 0, 1 gives the input's shape: is a sum over a batch or broadcast axis missing?",
            id="two-leading-axes",
        ),
        pytest.param(
            (2, 3), (2, 1),
            "Summing it over axis 1 with keepdims gives the input's shape: is a sum over a broadcast axis missing?",
            id="keepdims-axis",
        ),
    ],
)
def test_shape_hint_explains(obtained_shape, expected_shape, hint):
    assert diagnosis.shape_hint(obtained_shape, expected_shape) == hint


@pytest.mark.parametrize(
    ("obtained_shape", "expected_shape"),
    [
        pytest.param((2, 3), (4, 5), id="unrelated"),
        pytest.param((2, 2), (2, 2), id="same-shape"),
        pytest.param((3,), (4, 3), id="axis-dropped"),
        pytest.param((2, 3), (4, 1), id="two-axes-differ"),
    ],
)
def test_shape_hint_without_hint(obtained_shape, expected_shape):
    assert diagnosis.shape_hint(obtained_shape, expected_shape) is None


# ----------------------------------------------------------------------------------
# The catalogue: ops, their correct backward rules and wrong ones.


def linear(W, x, b):
    return W @ x + b


def batched_linear(X, W, b):
    return X @ W.T + b


def product_plus(x, y):
    return x * y + x


def product(x, y):
    return x * y


def fourth_power(x):
    return x**4


def mean_square(X):
    return jnp.mean(X**2, axis=0)


def square(x):
    return x**2


def sine(x):
    return jnp.sin(x)


def sum_of_squares(x):
    return jnp.sum(x**2)


def softmax(x):
    e = jnp.exp(x - jnp.max(x))
    return e / jnp.sum(e)


def x_sin_x(x):
    return x * jnp.sin(x)


def triple(x):
    return 3 * x


calls = itertools.count(1)


def counting_triple_backward(x, out, g):
    # The counter advances on every call, so two calls on the same residuals differ.
    return (3 * g * next(calls),)


@dataclasses.dataclass
class Case:
    """A wrong backward rule, its correct twin, and the lines its failure report must contain."""

    signature: str
    op: Callable
    wrong: Callable
    right: Callable
    prop: str
    # Strings that the report contains verbatim, or patterns for lines whose numbers
    # come from the shrunk example.
    lines: tuple[str | re.Pattern, ...]
    options: dict = dataclasses.field(default_factory=dict)


SHAPE_HINT_LINE = re.compile(
    r"^cotangent for 'b' \(input 2\) is f32\[(\d),(\d)\]; expected f32\[\2\], the shape and dtype of the "
    r"input\. Summing it over axis 0 gives the input's shape: is a sum over a batch or broadcast axis missing\?$",
    re.MULTILINE,
)
TRANSPOSED_SHAPE_LINE = re.compile(
    r"^cotangent for 'W' \(input 0\) is f32\[(\d),(\d)\]; expected f32\[\2,\1\], the shape and dtype of the "
    r"input\. It has the transposed shape: is the cotangent transposed\?$",
    re.MULTILINE,
)
DETERMINISM_LINE = re.compile(
    r"^Two calls of bwd on the same residuals, cotangent for 'x' \(input 0\): the two calls differ in "
    r"\d+ of \d+ elements; first at index \(\d+,\): .+ then .+\.$",
    re.MULTILINE,
)

CATALOGUE = {
    "transposed-weight": Case(
        "(d,d),(d),(d)->(d)", linear,
        wrong=lambda W, x, b, out, g: (jnp.outer(x, g), W.T @ g, g),
        right=lambda W, x, b, out, g: (jnp.outer(g, x), W.T @ g, g),
        prop="matches_autodiff",
        lines=("Diagnosis: the cotangent for 'W' is the transpose of the expected one.",),
        options={"data": "x"},
    ),
    "transposed-weight-flattening": Case(
        "(d,d),(d),(d)->(d)", linear,
        wrong=lambda W, x, b, out, g: (jnp.outer(x, g), W.T @ g, g),
        right=lambda W, x, b, out, g: (jnp.outer(g, x), W.T @ g, g),
        prop="flattening",
        lines=("Diagnosis: the cotangent for 'W' is the transpose of the expected one.",),
        options={"data": "x"},
    ),
    "flipped-sign": Case(
        "(n),(n)->(n)", product_plus,
        wrong=lambda x, y, out, g: (g * (y + 1), -g * x),
        right=lambda x, y, out, g: (g * (y + 1), g * x),
        prop="matches_autodiff",
        lines=("Diagnosis: sign flipped: the cotangent for 'y' is minus the expected one.",),
    ),
    # The power rule with the wrong coefficient: 3 x**3 in place of 4 x**3 for x**4.
    "constant-factor": Case(
        "(n)->(n)", fourth_power,
        wrong=lambda x, out, g: (3 * x**3 * g,),
        right=lambda x, out, g: (4 * x**3 * g,),
        prop="matches_autodiff",
        lines=("Diagnosis: off by a constant factor: the cotangent for 'x' is 0.75 times the expected one.",),
    ),
    "mean-for-sum": Case(
        "(n,d),(h,d),(h)->(n,h)", batched_linear,
        wrong=lambda X, W, b, out, G: (G @ W, G.T @ X / G.shape[0], jnp.sum(G, axis=0)),
        right=lambda X, W, b, out, G: (G @ W, G.T @ X, jnp.sum(G, axis=0)),
        prop="matches_autodiff",
        lines=(
            # The batch size it shrinks to depends on the draw; the sentence is fixed.
            re.compile(
                r"Diagnosis: the cotangent for 'W' is the expected one divided by (\d), the size of "
                r"dimension 'n': a mean where the sum belongs\."
            ),
        ),
    ),
    "sum-for-mean": Case(
        "(n,d)->(d)", mean_square,
        wrong=lambda X, out, g: (2 * X * g,),
        right=lambda X, out, g: (2 * X * g / X.shape[0],),
        prop="matches_autodiff",
        lines=(
            "Diagnosis: the cotangent for 'X' is the expected one times 2, the size of "
            "dimension 'n': an extra sum, or a sum where the mean belongs.",
        ),
    ),
    "missing-batch-sum": Case(
        "(n,d),(h,d),(h)->(n,h)", batched_linear,
        wrong=lambda X, W, b, out, G: (G @ W, G.T @ X, G[0]),
        right=lambda X, W, b, out, G: (G @ W, G.T @ X, jnp.sum(G, axis=0)),
        prop="matches_autodiff",
        lines=(
            "Diagnosis: the cotangent for 'b' is slice 0 of the output cotangent along axis "
            "0, where the sum over that axis belongs: a missing sum over a batch axis.",
        ),
    ),
    "extra-sum": Case(
        "(n)->(n)", square,
        wrong=lambda x, out, g: (jnp.broadcast_to(jnp.sum(2 * x * g), x.shape),),
        right=lambda x, out, g: (2 * x * g,),
        prop="matches_autodiff",
        lines=(
            "Diagnosis: the cotangent for 'x' is summed over axis 0 and broadcast back: an "
            "extra sum over that axis.",
        ),
    ),
    "zero-cotangent": Case(
        "(n)->(n)", sine,
        wrong=lambda x, out, g: (jnp.zeros_like(g),),
        right=lambda x, out, g: (jnp.cos(x) * g,),
        prop="matches_autodiff",
        lines=("Diagnosis: the cotangent for 'x' is zero everywhere.",),
    ),
    "ignored-cotangent": Case(
        "(n)->()", sum_of_squares,
        wrong=lambda x, out, g: (2 * x,),
        right=lambda x, out, g: (2 * x * g,),
        prop="matches_autodiff",
        lines=(
            "Diagnosis: the cotangent for 'x' is what an all-ones output cotangent would "
            "give: the rule ignores the incoming cotangent (or its scale).",
        ),
    ),
    # Values in [1, 5]: where x or y is 0, the swapped cotangent is zero and `zero`
    # names it instead.
    "swapped-cotangents": Case(
        "(n),(n)->(n)", product,
        wrong=lambda x, y, out, g: (g * x, g * y),
        right=lambda x, y, out, g: (g * y, g * x),
        prop="matches_autodiff",
        lines=(
            "Diagnosis: the cotangent returned for 'x' is the one expected for 'y': "
            "cotangents of two inputs swapped.",
            "Diagnosis: the cotangent returned for 'y' is the one expected for 'x': "
            "cotangents of two inputs swapped.",
        ),
        options={"specs": {"x": vc.real(1, 5), "y": vc.real(1, 5)}},
    ),
    "diagonal-softmax": Case(
        "(n)->(n)", softmax,
        wrong=lambda x, s, g: (s * (1 - s) * g,),
        right=lambda x, s, g: (s * (g - jnp.dot(s, g)),),
        prop="matches_autodiff",
        lines=(
            "Diagnosis: the cotangent for 'x' uses only the diagonal of the Jacobian: the "
            "off-diagonal terms (how each output depends on the other inputs) are missing.",
        ),
    ),
    "unsummed-bias-shape": Case(
        "(n,d),(h,d),(h)->(n,h)", batched_linear,
        wrong=lambda X, W, b, out, G: (G @ W, G.T @ X, G),
        right=lambda X, W, b, out, G: (G @ W, G.T @ X, jnp.sum(G, axis=0)),
        prop="structure",
        lines=(SHAPE_HINT_LINE,),
    ),
    "transposed-weight-shape": Case(
        "(h,d),(d),(h)->(h)", linear,
        wrong=lambda W, x, b, out, g: (jnp.outer(x, g), W.T @ g, g),
        right=lambda W, x, b, out, g: (jnp.outer(g, x), W.T @ g, g),
        prop="structure",
        lines=(TRANSPOSED_SHAPE_LINE,),
        options={"data": "x"},
    ),
    # The product rule with a factor dropped: d/dx (x sin x) as sin x + cos x, where
    # sin x + x cos x belongs. Hypothesis shrinks to x = 0, where the expected cotangent
    # is 0 and the obtained one is g, a mismatch that no pattern explains.
    "no-pattern": Case(
        "(n)->(n)", x_sin_x,
        wrong=lambda x, out, g: ((jnp.sin(x) + jnp.cos(x)) * g,),
        right=lambda x, out, g: ((jnp.sin(x) + x * jnp.cos(x)) * g,),
        prop="matches_autodiff",
        lines=("Diagnosis: no known pattern.",),
    ),
    "list-return": Case(
        "(n)->(n)", triple,
        wrong=lambda x, out, g: [3 * g],
        right=lambda x, out, g: (3 * g,),
        prop="structure",
        lines=("the backward rule returned a list; return a tuple of 1 cotangent (x).",),
    ),
    "missing-cotangent": Case(
        "(n),(n)->(n)", product,
        wrong=lambda x, y, out, g: (g * y,),
        right=lambda x, y, out, g: (g * y, g * x),
        prop="structure",
        lines=("the backward rule returned 1 cotangent for 2 inputs (x, y).",),
    ),
    "affine-in-cotangent": Case(
        "(n)->(n)", triple,
        wrong=lambda x, out, g: (3 * g + 0.5,),
        right=lambda x, out, g: (3 * g,),
        prop="linearity",
        lines=("bwd(0), cotangent for 'x' (input 0): 1 of 1 elements differ.",),
    ),
    "python-state": Case(
        "(n)->(n)", triple,
        wrong=counting_triple_backward,
        right=lambda x, out, g: (3 * g,),
        prop="determinism",
        lines=(DETERMINISM_LINE,),
    ),
}


def make_rule(registry, case, backward):
    rule = vc.rule(case.signature, registry=registry, **case.options)(case.op)
    rule.vjp(backward)
    return rule


def check_one(rule, prop):
    # float32 alone and sides up to 3 keep compilation, and so this file, fast.
    return vc.check(rule, properties=[prop], dtypes=["float32"], max_side=3)


def failure_text(rule, prop):
    with pytest.raises(vc.RuleMismatch) as info:
        check_one(rule, prop)
    return str(info.value) + "\n" + "\n".join(getattr(info.value, "__notes__", []))


def contains(text, line):
    if isinstance(line, re.Pattern):
        return line.search(text) is not None
    return line in text


@pytest.mark.parametrize("case", CATALOGUE.values(), ids=CATALOGUE.keys())
def test_catalogue_names_mistake(registry, case):
    text = failure_text(make_rule(registry, case, case.wrong), case.prop)
    assert f"failed property '{case.prop}'." in text
    for line in case.lines:
        assert contains(text, line), f"missing from the report: {line}"


@pytest.mark.parametrize("case", CATALOGUE.values(), ids=CATALOGUE.keys())
def test_catalogue_twin_passes(registry, case):
    report = check_one(make_rule(registry, case, case.right), case.prop)
    assert report.results[0].outcome == "passed"


def make_elementwise(registry, op):
    @vc.rule("(n)->(n)", registry=registry, name="elementwise")
    def elementwise(x):
        return op(x)

    @elementwise.vjp
    def _(x, out, g):
        return (g,)

    return elementwise


def test_kink_hint_for_undeclared_kink(registry):
    rule = make_elementwise(registry, lambda x: jnp.maximum(x, 0.0))
    example = Example(primals=(np.array([0.0, 2.0]),), sizes={"n": 2}, output_shape=(2,))
    assert kink_hint(rule, example) == (
        "Hint: an input is exactly 0. If the op is not differentiable there (ReLU, abs, "
        "max), declare the point with kinks=[0.0], and vjpcheck keeps inputs away from it."
    )


def test_kink_hint_absent_for_smooth_op(registry):
    # x sin x has derivative 0 at 0 and changes sign there, but smoothly.
    rule = make_elementwise(registry, lambda x: x * jnp.sin(x))
    example = Example(primals=(np.array([0.0, 2.0]),), sizes={"n": 2}, output_shape=(2,))
    assert kink_hint(rule, example) is None


def test_unexplained_smooth_mismatch_has_no_hint(registry):
    case = CATALOGUE["no-pattern"]
    text = failure_text(make_rule(registry, case, case.wrong), case.prop)
    assert "Diagnosis: no known pattern." in text
    assert "Hint:" not in text


def test_explained_mismatch_omits_hint(registry):
    # Hypothesis shrinks to x = 0 here too, but the diagnosis explains the mismatch.
    case = CATALOGUE["zero-cotangent"]
    text = failure_text(make_rule(registry, case, case.wrong), case.prop)
    assert "Draw 2 (x): array([0.], dtype=float32)" in text
    assert "Hint:" not in text


def test_zero_softmax_named_zero(registry):
    case = dataclasses.replace(CATALOGUE["diagonal-softmax"], wrong=lambda x, s, g: (jnp.zeros_like(g),))
    text = failure_text(make_rule(registry, case, case.wrong), case.prop)
    assert "Diagnosis: the cotangent for 'x' is zero everywhere." in text


def test_determinism_prints_plain_numbers(registry):
    case = CATALOGUE["python-state"]
    text = failure_text(make_rule(registry, case, case.wrong), case.prop)
    assert "np.float64(" not in text


# ----------------------------------------------------------------------------------
# Confirmation on a larger random input


def test_confirm_keeps_pattern_seen_on_both():
    first = Evidence(name="x", obtained=np.array([0.0, -2.0]), expected=np.array([0.0, 2.0]))
    dense = Evidence(name="x", obtained=np.array([-1.0, -3.0, 2.0]), expected=np.array([1.0, 3.0, -2.0]))
    assert diagnosis.confirm(first, dense) == "sign flipped: the cotangent for 'x' is minus the expected one."


def test_confirm_drops_pattern_of_small_example():
    # Two elements are proportional by chance; three are not.
    first = Evidence(name="x", obtained=np.array([3.0, -3.0]), expected=np.array([1.0, -1.0]))
    dense = Evidence(name="x", obtained=np.array([3.0, -1.0, 5.0]), expected=np.array([1.0, -2.0, 1.0]))
    assert diagnosis.confirm(first, dense) == diagnosis.NO_PATTERN


def test_confirm_prefers_pattern_of_dense_input():
    first = Evidence(name="x", obtained=np.array([0.0, 0.0]), expected=np.array([0.0, 1.0]))
    dense = Evidence(name="x", obtained=np.array([-1.0, -3.0, 2.0]), expected=np.array([1.0, 3.0, -2.0]))
    assert diagnosis.confirm(first, dense) == (
        "sign flipped: the cotangent for 'x' is minus the expected one. (This shows on a larger "
        "random input; the example above is too small to tell.)"
    )


def test_confirm_without_dense_input():
    first = Evidence(name="x", obtained=np.array([0.0, -2.0]), expected=np.array([0.0, 2.0]))
    assert diagnosis.confirm(first, None) == "sign flipped: the cotangent for 'x' is minus the expected one."


def test_layer_norm_without_variance_term_not_misnamed(registry):
    # At n = 2 both the right and the wrong cotangent are multiples of (1, -1), so a
    # constant factor fits the shrunk example; on a larger input it does not.
    @vc.rule("(n)->(n)", registry=registry, name="normalize")
    def normalize(x):
        centred = x - x.mean()
        return centred / jnp.sqrt((centred**2).mean() + 1e-5)

    @normalize.vjp
    def _(x, out, g):
        rstd = 1 / jnp.sqrt(((x - x.mean()) ** 2).mean() + 1e-5)
        return (rstd * (g - g.mean()),)  # the variance term is missing

    text = failure_text(normalize, "matches_autodiff")
    assert "Diagnosis: no known pattern." in text
    assert "off by a constant factor" not in text
