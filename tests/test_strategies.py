"""Drawing core sizes, primals and custom arrays from specs."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

import vjpcheck
from vjpcheck import InvalidSpec
from vjpcheck._specs import SMALLEST_MAGNITUDE
from vjpcheck._strategies import (
    KINK_MARGIN,
    ShapeOptions,
    dim_sizes,
    draw_example,
    float_arrays,
    keep_off_kinks,
    kink_margin,
)

FAST = settings(max_examples=50, deadline=None)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)

# ----------------------------------------------------------------------------------
# dim_sizes and ShapeOptions


@FAST
@given(dim_sizes(("a", "b", "c"), ShapeOptions(min_side=1, max_side=4)))
def test_dim_sizes_distinct_when_range_allows(sizes):
    assert list(sizes) == ["a", "b", "c"]
    assert len(set(sizes.values())) == 3
    assert all(1 <= size <= 4 for size in sizes.values())


@FAST
@given(dim_sizes(("a", "b", "c"), ShapeOptions(min_side=2, max_side=3)))
def test_dim_sizes_in_range_when_too_narrow(sizes):
    assert list(sizes) == ["a", "b", "c"]
    assert all(2 <= size <= 3 for size in sizes.values())


def test_dim_sizes_repeat_when_range_too_narrow():
    strategy = dim_sizes(("a", "b"), ShapeOptions(min_side=3, max_side=3))

    sizes = find(strategy, lambda sizes: True, settings=FAST)

    assert sizes == {"a": 3, "b": 3}


def test_dim_sizes_repeat_without_distinct_dims():
    options = ShapeOptions(min_side=1, max_side=4, distinct_dims=False)
    strategy = dim_sizes(("a", "b"), options)

    sizes = find(strategy, lambda sizes: sizes["a"] == sizes["b"], settings=FAST)

    assert sizes["a"] == sizes["b"]


def test_dim_sizes_never_repeat_when_distinct():
    strategy = dim_sizes(("a", "b"), ShapeOptions(min_side=1, max_side=2))

    with pytest.raises(NoSuchExample):
        find(strategy, lambda sizes: sizes["a"] == sizes["b"], settings=FAST)


def test_dim_sizes_of_no_names():
    sizes = find(dim_sizes((), ShapeOptions()), lambda sizes: True, settings=FAST)

    assert sizes == {}


@pytest.mark.parametrize("min_side", [0, -1, 1.5, "1", None])
def test_shape_options_reject_bad_min_side(min_side):
    with pytest.raises(InvalidSpec) as raised:
        ShapeOptions(min_side=min_side, max_side=4)

    message = str(raised.value)
    assert f"min_side={min_side!r}" in message
    assert "must be an integer >= 1" in message


@pytest.mark.parametrize("max_side", [2, 0, 3.5, "4", None])
def test_shape_options_reject_bad_max_side(max_side):
    with pytest.raises(InvalidSpec) as raised:
        ShapeOptions(min_side=3, max_side=max_side)

    message = str(raised.value)
    assert f"max_side={max_side!r}" in message
    assert "must be an integer >= min_side=3" in message


def test_shape_options_accept_single_size():
    options = ShapeOptions(min_side=2, max_side=2)

    assert (options.min_side, options.max_side) == (2, 2)


# ----------------------------------------------------------------------------------
# keep_off_kinks


def test_keep_off_kinks_moves_values_to_margin():
    margin = 1e-3
    values = np.array([-5e-4, -1e-6, 1e-6, 9.99e-4], FLOAT64)

    moved = keep_off_kinks(values, [0.0], margin)

    np.testing.assert_array_equal(moved, [-margin, -margin, margin, margin])


def test_keep_off_kinks_moves_zero_to_plus_margin():
    values = np.array([0.0, -0.0], FLOAT64)

    moved = keep_off_kinks(values, [0.0], 1e-3)

    np.testing.assert_array_equal(moved, [1e-3, 1e-3])


def test_keep_off_kinks_leaves_far_values_unchanged():
    values = np.array([-3.0, -1e-3, 1e-3, 2e-3, 7.5], FLOAT64)

    moved = keep_off_kinks(values, [0.0], 1e-3)

    np.testing.assert_array_equal(moved, values)


def test_keep_off_kinks_handles_nonzero_kinks():
    margin = 0.01
    values = np.array([0.995, 1.0, 1.004, 2.0, -1.0, -0.999], FLOAT64)

    moved = keep_off_kinks(values, [1.0, -1.0], margin)

    expected = [1.0 - margin, 1.0 + margin, 1.0 + margin, 2.0, -1.0 + margin, -1.0 + margin]
    np.testing.assert_array_equal(moved, expected)


def test_keep_off_kinks_keeps_dtype_and_input():
    values = np.array([[0.0, 0.5], [-1e-4, 2.0]], FLOAT32)
    original = values.copy()

    moved = keep_off_kinks(values, [0.0], 1e-3)

    assert moved.dtype == FLOAT32
    assert moved.shape == (2, 2)
    np.testing.assert_array_equal(moved, np.array([[1e-3, 0.5], [-1e-3, 2.0]], FLOAT32))
    np.testing.assert_array_equal(values, original)


def test_kink_margin_scales_with_magnitude():
    assert kink_margin(vjpcheck.real(-0.5, 0.5)) == KINK_MARGIN
    assert kink_margin(vjpcheck.real(-20.0, 5.0)) == KINK_MARGIN * 20.0


# ----------------------------------------------------------------------------------
# Primals drawn for a rule


def _rule_with_index():
    def pick(x, label):
        return x[label]

    return vjpcheck.rule(
        "(n),(k)->(k)",
        specs={"label": vjpcheck.index("n")},
        registry=vjpcheck.Registry(),
    )(pick)


@FAST
@given(st.data())
def test_index_arrays_stay_in_range(data):
    rule = _rule_with_index()

    example = draw_example(data, rule, FLOAT32, ShapeOptions(min_side=1, max_side=5))

    labels = example.primals[1]
    assert labels.dtype == np.int32
    assert labels.shape == (example.sizes["k"],)
    assert np.all(labels >= 0)
    assert np.all(labels < example.sizes["n"])


@FAST
@given(st.data())
def test_draw_example_shapes_follow_sizes(data):
    rule = _rule_with_index()

    example = draw_example(data, rule, FLOAT64, ShapeOptions(min_side=1, max_side=5))

    assert example.primals[0].shape == (example.sizes["n"],)
    assert example.primals[0].dtype == FLOAT64
    assert example.output_shape == (example.sizes["k"],)


@FAST
@given(st.data())
def test_draw_example_keeps_off_declared_kinks(data):
    rule = vjpcheck.rule("(n)->(n)", kinks=[0.0], registry=vjpcheck.Registry())(lambda x: x)
    margin = kink_margin(rule.specs[0])

    example = draw_example(data, rule, FLOAT64, ShapeOptions())

    assert np.all(np.abs(example.primals[0]) >= margin)


# ----------------------------------------------------------------------------------
# Float elements


# With this many examples, Hypothesis drew each bound in 40 of 40 randomized trial runs.
# find stops at the first value outside the bounds, so only a passing search draws all.
SEARCH = settings(max_examples=1000, database=None, deadline=None)


@FAST
@given(vjpcheck.real(-0.25, 0.5).elements(FLOAT32))
def test_float32_draws_honour_exact_bounds(value):
    assert -0.25 <= value <= 0.5
    assert float(np.float32(value)) == value


def test_float32_cannot_represent_test_bounds():
    assert float(np.float32(0.01)) < 0.01
    assert float(np.float32(0.1)) > 0.1
    assert float(np.float32(-0.1)) < -0.1
    assert float(np.float32(1e-50)) == 0.0


def test_float32_draws_stay_above_inexact_min():
    strategy = vjpcheck.positive(0.01, 0.1).elements(FLOAT32)

    with pytest.raises(NoSuchExample):
        find(strategy, lambda value: value < 0.01, settings=SEARCH)


def test_float32_draws_stay_below_inexact_max():
    strategy = vjpcheck.positive(0.01, 0.1).elements(FLOAT32)

    with pytest.raises(NoSuchExample):
        find(strategy, lambda value: value > 0.1, settings=SEARCH)


def test_float32_draws_stay_above_negative_min():
    strategy = vjpcheck.real(-0.1, 1.0).elements(FLOAT32)

    with pytest.raises(NoSuchExample):
        find(strategy, lambda value: value < -0.1, settings=SEARCH)


def test_float32_positive_never_draws_zero():
    strategy = vjpcheck.positive(1e-50, 1.0).elements(FLOAT32)

    with pytest.raises(NoSuchExample):
        find(strategy, lambda value: value <= 0.0, settings=SEARCH)


@FAST
@given(vjpcheck.real(-1.0, 1.0).elements(FLOAT64))
def test_draws_near_zero_become_zero(value):
    assert value == 0.0 or abs(value) >= SMALLEST_MAGNITUDE


def test_tiny_draws_absent_when_range_has_zero():
    strategy = vjpcheck.real(-1.0, 1.0).elements(FLOAT64)

    with pytest.raises(NoSuchExample):
        find(strategy, lambda value: 0.0 < abs(value) < SMALLEST_MAGNITUDE, settings=FAST)


def test_tiny_draws_kept_when_range_excludes_zero():
    strategy = vjpcheck.positive(1e-8, 1.0).elements(FLOAT64)

    tiny = find(strategy, lambda value: value < SMALLEST_MAGNITUDE, settings=FAST)

    assert 1e-8 <= tiny < SMALLEST_MAGNITUDE


@FAST
@given(float_arrays(vjpcheck.real(-2.0, 2.0), (2, 3), FLOAT32))
def test_float_arrays_shape_dtype_and_bounds(array):
    assert array.shape == (2, 3)
    assert array.dtype == FLOAT32
    assert np.all(np.abs(array) <= 2.0)


# ----------------------------------------------------------------------------------
# array_strategy specs


@FAST
@given(st.data())
def test_array_strategy_casts_to_requested_dtype(data):
    spec = vjpcheck.array_strategy(
        lambda shape, dtype: hnp.arrays(np.float64, shape, elements=st.floats(-1.0, 1.0))
    )

    array = data.draw(float_arrays(spec, (3,), FLOAT32))

    assert array.dtype == FLOAT32
    assert array.shape == (3,)


@FAST
@given(st.data())
def test_array_strategy_rejects_wrong_shape(data):
    spec = vjpcheck.array_strategy(lambda shape, dtype: hnp.arrays(dtype, (3,)))

    with pytest.raises(InvalidSpec) as raised:
        data.draw(float_arrays(spec, (2,), FLOAT32))

    message = str(raised.value)
    assert "drew an array of shape (3,) and dtype float32" in message
    assert "where shape (2,) and a floating dtype were needed" in message
    assert "build the strategy from the shape and dtype it is given" in message


@FAST
@given(st.data())
def test_array_strategy_rejects_integer_arrays(data):
    spec = vjpcheck.array_strategy(lambda shape, dtype: hnp.arrays(np.int32, shape))

    with pytest.raises(InvalidSpec) as raised:
        data.draw(float_arrays(spec, (2,), FLOAT32))

    message = str(raised.value)
    assert "drew an array of shape (2,) and dtype int32" in message
    assert "a floating dtype were needed" in message
