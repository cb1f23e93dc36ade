"""Tolerances, elementwise comparison, float64 modes and central differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjpcheck._numerics import (
    AUTODIFF_FACTOR,
    FD_STEP,
    FLOOR_EPS,
    Tolerance,
    choose_tolerance,
    compare,
    difference_rounding,
    directional_differences,
    fd_step,
    relative_error,
    truth_mode,
    x64_mode,
)

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
# The default atol: below smallest_normal / eps, an underflow to zero costs more than
# one epsilon of relative error.
TINY32 = float(np.finfo(np.float32).smallest_normal / np.finfo(np.float32).eps)
TINY64 = float(np.finfo(np.float64).smallest_normal / np.finfo(np.float64).eps)


def _default_tolerance(dtype, autodiff_error):
    return choose_tolerance(
        np.dtype(dtype), autodiff_error, rtol=None, atol=None, override_origin="unused"
    )


# ----------------------------------------------------------------------------------
# choose_tolerance


@pytest.mark.parametrize("dtype, eps, tiny", [(np.float32, EPS32, TINY32), (np.float64, EPS64, TINY64)])
def test_tolerance_floor_without_autodiff_error(dtype, eps, tiny):
    tolerance = _default_tolerance(dtype, 0.0)

    assert tolerance.rtol == FLOOR_EPS * eps
    assert tolerance.atol == tiny


def test_tolerance_floor_origin_text():
    tolerance = _default_tolerance(np.float32, 0.5 * EPS32)

    assert tolerance.origin == (
        "default: floor of 16 float32 eps; "
        "JAX's own float32 autodiff error on this input: 0.5 float32 eps"
    )


def test_tolerance_without_measured_autodiff():
    # Without a reference, or for a check of the rule against itself, no autodiff error
    # is measured, and the origin must not claim one.
    tolerance = _default_tolerance(np.float32, None)

    assert tolerance.rtol == FLOOR_EPS * EPS32
    assert tolerance.origin == "default: floor of 16 float32 eps"


def test_tolerance_floor_when_autodiff_error_small():
    autodiff_error = FLOOR_EPS / AUTODIFF_FACTOR * EPS32

    tolerance = _default_tolerance(np.float32, autodiff_error)

    assert tolerance.rtol == FLOOR_EPS * EPS32
    assert tolerance.origin.startswith("default: floor of 16 float32 eps")


def test_tolerance_follows_large_autodiff_error():
    tolerance = _default_tolerance(np.float32, 10 * EPS32)

    assert tolerance.rtol == pytest.approx(AUTODIFF_FACTOR * 10 * EPS32, rel=1e-12)
    assert tolerance.atol == TINY32
    assert tolerance.origin == (
        "default: 8 x JAX's own float32 autodiff error on this input: 10 float32 eps"
    )


def test_tolerance_scales_autodiff_error_to_float64():
    tolerance = _default_tolerance(np.float64, 10 * EPS32)

    assert tolerance.rtol == pytest.approx(AUTODIFF_FACTOR * 10 * EPS64, rel=1e-12)
    assert tolerance.atol == TINY64


def test_tolerance_overrides_rtol_only():
    tolerance = choose_tolerance(
        np.dtype(np.float32), 0.0, rtol=1e-3, atol=None, override_origin="rtol set on the rule"
    )

    assert tolerance == Tolerance(rtol=1e-3, atol=TINY32, origin="rtol set on the rule")


def test_tolerance_overrides_atol_only():
    tolerance = choose_tolerance(
        np.dtype(np.float32), 10 * EPS32, rtol=None, atol=1e-6, override_origin="atol set"
    )

    assert tolerance.rtol == pytest.approx(AUTODIFF_FACTOR * 10 * EPS32, rel=1e-12)
    assert tolerance.atol == 1e-6
    assert tolerance.origin == "atol set"


def test_tolerance_overrides_both():
    tolerance = choose_tolerance(
        np.dtype(np.float64), 10 * EPS32, rtol=0.0, atol=0.0, override_origin="both set"
    )

    assert tolerance == Tolerance(rtol=0.0, atol=0.0, origin="both set")


def test_tolerance_bound_and_describe():
    tolerance = Tolerance(rtol=0.01, atol=0.5, origin="set by test")

    np.testing.assert_array_equal(tolerance.bound(np.array([0.0, 100.0])), [0.5, 1.5])
    assert tolerance.describe() == (
        "|obtained - expected| <= 0.01 * scale + 0.5, where scale is the magnitude "
        "of the terms behind each element (set by test)"
    )


# ----------------------------------------------------------------------------------
# compare and Comparison


def test_compare_nan_never_matches():
    comparison = compare(np.array([np.nan, np.nan]), np.array([np.nan, 1.0]), np.array(1e9))

    np.testing.assert_array_equal(comparison.mismatched, [True, True])
    assert comparison.count == 2


def test_compare_inf_never_matches():
    obtained = np.array([np.inf, -np.inf, np.inf])
    expected = np.array([np.inf, -np.inf, 1.0])

    comparison = compare(obtained, expected, np.array(np.inf))

    np.testing.assert_array_equal(comparison.mismatched, [True, True, True])


def test_compare_counts_elements_over_bound():
    obtained = np.array([[1.0, 2.0], [3.0, 4.5]])
    expected = np.array([[1.0, 2.2], [3.05, 4.0]])

    comparison = compare(obtained, expected, np.array(0.1))

    np.testing.assert_array_equal(comparison.mismatched, [[False, True], [False, True]])
    assert comparison.count == 2


def test_compare_error_exactly_at_bound_matches():
    comparison = compare(np.array([1.5]), np.array([1.0]), np.array([0.5]))

    assert comparison.count == 0
    assert comparison.worst_ratio == 1.0


def test_compare_broadcasts_bound_and_casts():
    comparison = compare(np.array([1, 2, 3], np.float32), [1.0, 2.0, 3.0], np.array(0.0))

    assert comparison.bound.shape == (3,)
    assert comparison.obtained.dtype == np.float64
    assert comparison.count == 0


def test_comparison_error_maps_nan_to_inf():
    comparison = compare(np.array([np.nan, 2.0, 1.0]), np.array([1.0, np.nan, 0.5]), np.array(1.0))

    np.testing.assert_array_equal(comparison.error, [np.inf, np.inf, 0.5])


def test_worst_ratio_is_largest_error_over_bound():
    obtained = np.array([1.0, 2.0, 3.0])
    expected = np.array([1.1, 2.5, 3.0])

    comparison = compare(obtained, expected, np.array([0.2, 0.25, 0.1]))

    assert comparison.worst_ratio == pytest.approx(2.0, rel=1e-12)


def test_worst_ratio_with_zero_bound():
    exact = compare(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array(0.0))
    wrong = compare(np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.array(0.0))

    assert exact.worst_ratio == 0.0
    assert wrong.worst_ratio == np.inf


def test_worst_ratio_of_nan_is_inf():
    comparison = compare(np.array([np.nan]), np.array([1.0]), np.array(1.0))

    assert comparison.worst_ratio == np.inf


def test_worst_ratio_of_empty_arrays():
    comparison = compare(np.zeros((0, 3)), np.zeros((0, 3)), np.array(1.0))

    assert comparison.worst_ratio == 0.0
    assert comparison.count == 0


# ----------------------------------------------------------------------------------
# relative_error


def test_relative_error_largest_over_elements():
    error = relative_error(np.array([1.1, 2.0, 4.0]), np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 4.0]))

    assert error == pytest.approx(0.25, rel=1e-12)


def test_relative_error_skips_zero_scale():
    error = relative_error(np.array([5.0, 1.5]), np.array([0.0, 1.0]), np.array([0.0, 2.0]))

    assert error == pytest.approx(0.25, rel=1e-12)


def test_relative_error_all_scales_zero():
    error = relative_error(np.array([5.0]), np.array([0.0]), np.array([0.0]))

    assert error == 0.0


def test_relative_error_non_finite_or_empty():
    assert relative_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert relative_error(np.array([np.inf]), np.array([1.0]), np.array([1.0])) == 0.0
    assert relative_error(np.zeros(0), np.zeros(0), np.zeros(0)) == 0.0


# ----------------------------------------------------------------------------------
# x64_mode and truth_mode


def test_x64_off_by_default():
    assert jax.config.jax_enable_x64 is False


def test_x64_mode_float64_inside_then_restored():
    with x64_mode(np.dtype(np.float64)):
        inside = jnp.asarray(np.ones(2), jnp.float64)
        summed = jnp.sum(inside)

    assert inside.dtype == jnp.float64
    assert summed.dtype == jnp.float64
    assert jax.config.jax_enable_x64 is False
    assert jnp.asarray(np.ones(2)).dtype == jnp.float32


def test_x64_mode_float32_keeps_setting():
    with x64_mode(np.dtype(np.float32)):
        inside = jnp.asarray(np.ones(2))
        enabled = jax.config.jax_enable_x64

    assert enabled is False
    assert inside.dtype == jnp.float32
    assert jax.config.jax_enable_x64 is False


def test_truth_mode_float64_inside_then_restored():
    with truth_mode():
        inside = jnp.asarray(np.ones(3))
        product = inside * 2.0

    assert inside.dtype == jnp.float64
    assert product.dtype == jnp.float64
    assert jax.config.jax_enable_x64 is False


def test_x64_mode_restores_after_exception():
    with pytest.raises(RuntimeError):
        with x64_mode(np.dtype(np.float64)):
            raise RuntimeError("raised inside x64_mode")

    assert jax.config.jax_enable_x64 is False


# ----------------------------------------------------------------------------------
# Central differences


def test_fd_step_for_unit_scale_inputs():
    step = fd_step([np.array([0.5, -0.25])], [np.array([0.1])])

    assert step == FD_STEP


def test_fd_step_grows_with_primals():
    step = fd_step([np.array([1.0, -40.0]), np.array([3.0])], [np.array([0.5])])

    assert step == FD_STEP * 40.0


def test_fd_step_shrinks_with_tangents():
    step = fd_step([np.array([100.0])], [np.array([2.0]), np.array([-8.0])])

    assert step == pytest.approx(FD_STEP * 100.0 / 8.0, rel=1e-15)


def test_fd_step_with_empty_arrays():
    assert fd_step([np.zeros(0)], [np.zeros(0)]) == FD_STEP


def _square_and_scale(x, w):
    return x * x * w


def test_directional_difference_quadratic_exact():
    primals = [jnp.array([1.0, 2.0, -3.0]), jnp.array([2.0, 2.0, 2.0])]
    tangents = [jnp.array([1.0, -1.0, 0.5])]
    cotangent = jnp.array([1.0, 0.5, 2.0])

    result = directional_differences(_square_and_scale, primals, tangents, (0,), cotangent, jnp.array([2.0**-8, 2.0**-10]))

    # With w = 2, the derivative of w x^2 along h is 4 x h, and <u, 4 x h> = 4 - 4 - 12.
    assert [float(r) for r in result] == [-12.0, -12.0]


def test_directional_difference_within_rounding_bound():
    x = np.array([0.3, -1.7, 2.2, 0.05])
    w = np.array([1.5, -0.75, 2.0, 3.0])
    h = np.array([0.5, 0.25, -1.0, 0.8])
    u = np.array([1.0, -2.0, 0.5, 1.25])
    step = fd_step([x, w], [h])
    truth = float(np.sum(u * 2 * x * w * h))

    with truth_mode():
        (result,) = directional_differences(_square_and_scale, [x, w], [h], (0,), u, jnp.array([step]))
        bound = difference_rounding(_square_and_scale, [x, w], [h], (0,), u, step)

    assert result.dtype == jnp.float64
    assert 0.0 < float(bound) < 1e-8
    assert abs(float(result) - truth) <= float(bound)


def test_directional_difference_inside_jit():
    x = jnp.array([0.5, -0.25])
    w = jnp.array([4.0, 4.0])
    h = jnp.array([1.0, 1.0])
    u = jnp.array([1.0, 1.0])

    @jax.jit
    def kernel(x, w, h, u):
        return directional_differences(_square_and_scale, [x, w], [h], (0,), u, jnp.array([2.0**-8]))[0]

    # <u, 2 x w h> = 2 * 0.5 * 4 + 2 * -0.25 * 4.
    assert float(kernel(x, w, h, u)) == 2.0
