"""The error model judges rules by what the dtype allows: wrong rules fail, twins pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vjpcheck as vc


def failure_text(rule, prop, **options):
    options.setdefault("dtypes", ["float32"])
    with pytest.raises(vc.RuleMismatch) as info:
        vc.check(rule, properties=[prop], **options)
    return str(info.value) + "\n" + "\n".join(getattr(info.value, "__notes__", []))


def make_softmax(registry, backward):
    @vc.rule("(n)->(n)", registry=registry, output=vc.positive(), name="softmax")
    def softmax(x):
        e = jnp.exp(x - jnp.max(x))
        return e / jnp.sum(e)

    @softmax.vjp
    def _(x, s, g):
        return (backward(x, s, g),)

    return softmax


def naive_backward(x, s, g):
    # Recomputes softmax without subtracting the maximum: exp overflows above ~88.
    e = jnp.exp(x)
    p = e / jnp.sum(e)
    return p * (g - jnp.dot(p, g))


def stable_backward(x, s, g):
    return s * (g - jnp.dot(s, g))


def test_stability_catches_naive_softmax(registry):
    text = failure_text(make_softmax(registry, naive_backward), "stability")
    assert "failed property 'stability'" in text
    assert "| nan " in text


def test_naive_softmax_passes_narrow_ranges(registry):
    vc.check(make_softmax(registry, naive_backward), properties=["matches_autodiff"], dtypes=["float32"])


def test_stability_passes_stable_softmax(registry):
    vc.check(make_softmax(registry, stable_backward), properties=["stability"])


def make_square(registry, backward):
    @vc.rule("(n)->(n)", registry=registry, name="square")
    def square(x):
        return x * x

    @square.vjp
    def _(x, out, g):
        return (backward(x, g),)

    return square


def test_nan_where_truth_finite_fails(registry):
    rule = make_square(registry, lambda x, g: jnp.where(x == 0, jnp.nan, 2 * x * g))
    text = failure_text(rule, "matches_autodiff")
    assert "| nan      |" in text


def test_nan_never_matches_nan():
    comparison = vc._numerics.compare(np.array([np.nan]), np.array([np.nan]), np.array([1.0]))
    assert comparison.count == 1


def test_far_beyond_rounding_fails(registry):
    # A relative error of 1e-4 is about 800 float32 epsilons: no rounding explains it.
    rule = make_square(registry, lambda x, g: 2 * x * g * (1 + 1e-4))
    text = failure_text(rule, "matches_autodiff", dtypes=["float32"])
    assert "Tolerance: |obtained - expected| <= 1.91e-06 * scale" in text


def test_float32_rounding_passes(registry):
    # The same value computed in a different order, or via float16 inputs widened back,
    # differs from the truth by rounding only.
    rule = make_square(registry, lambda x, g: (x + x) * g)
    vc.check(rule, properties=["matches_autodiff"], dtypes=["float32", "float64"])


def test_bfloat16_rounding_passes(registry):
    rule = make_square(registry, lambda x, g: 2 * x * g)
    vc.check(rule, properties=["matches_autodiff", "adjoint"], dtypes=["bfloat16", "float16"])


def test_cancelling_softmax_passes(registry):
    # With cotangents near 1e3 the float32 backward pass cancels to about 1e-5, where a
    # fixed rtol=1e-5 misjudges a correct rule; the magnitude-scaled tolerance does not.
    from vjpcheck import _judging, _kernels
    from vjpcheck._context import Context, Stats
    from vjpcheck._strategies import ShapeOptions

    rule = make_softmax(registry, stable_backward)
    x = np.array([0.3, -1.7, 2.2, 0.9], np.float32)
    u = np.array([1000.0, 1000.001, 999.999, 1000.002], np.float32)
    pulled = _kernels.pullbacks(rule, np.dtype(np.float32), (x,), u)
    ctx = Context(rule, np.dtype(np.float32), ShapeOptions(), None, None, [], 5, Stats())
    failures, _ = _judging.cotangent_failures(
        ctx, rule, pulled.obtained, pulled.expected, pulled.scales(), pulled.autodiff, rule.float_inputs
    )
    obtained, expected = np.asarray(pulled.obtained[0], np.float64), np.asarray(pulled.expected[0])
    assert failures == []
    assert np.any(np.abs(obtained - expected) > 1e-5 * np.abs(expected))


def test_tolerance_derivation_is_shown(registry):
    rule = make_square(registry, lambda x, g: 2 * x * g * (1 + 1e-4))
    text = failure_text(rule, "matches_autodiff")
    assert "where scale is the magnitude of the terms behind each element (default: floor of 16 float32 eps; JAX's own float32 autodiff error on this input:" in text


def make_relu(registry, backward, **options):
    @vc.rule("(n)->(n)", kinks=[0.0], registry=registry, name="relu", **options)
    def relu(x):
        return jnp.maximum(x, 0.0)

    @relu.vjp
    def _(x, out, g):
        return (backward(x, g),)

    return relu


def test_subgradients_accept_either_side(registry):
    # x >= 0 takes the subgradient 1 at the kink, where jnp.maximum's derivative is 0.5.
    rule = make_relu(registry, lambda x, g: jnp.where(x >= 0, g, 0.0), subgradients=True)
    report = vc.check(rule, properties=["matches_autodiff", "adjoint"], max_examples=50)
    assert [r.outcome for r in report.results] == ["passed", "passed"]


def test_subgradients_reject_outside_interval(registry):
    rule = make_relu(registry, lambda x, g: jnp.where(x >= 0, 2 * g, 0.0), subgradients=True)
    text = failure_text(rule, "matches_autodiff")
    assert "Cotangent for 'x' (input 0)" in text


def test_subgradients_draw_kink_points(registry):
    rule = make_relu(registry, lambda x, g: jnp.where(x >= 0, g, 0.0), subgradients=True)
    from vjpcheck._strategies import ShapeOptions, primal_strategy
    from hypothesis import find

    strategy = primal_strategy(rule, 0, (3,), np.dtype(np.float32), {"n": 3}, on_kinks=True)
    found = find(strategy, lambda array: bool(np.any(array == 0.0)))
    assert np.any(found == 0.0)


def test_ties_kinks_keep_elements_apart(registry):
    @vc.rule("(n)->()", kinks="ties", registry=registry, name="largest")
    def largest(x):
        return jnp.max(x)

    @largest.vjp
    def _(x, out, g):
        return (jnp.where(x == out, g, 0.0),)

    vc.check(largest, properties=["matches_autodiff", "adjoint"], max_examples=50)
    from vjpcheck._strategies import keep_apart

    spread = keep_apart(np.array([1.0, 1.0, 0.5, 1.0]), 0.1)
    assert np.min(np.diff(np.sort(spread))) >= 0.1 - 1e-12


def test_unknown_kink_word_rejected(registry):
    with pytest.raises(vc.InvalidSpec) as info:
        vc.rule("(n)->()", kinks=["tie"], registry=registry)(lambda x: jnp.max(x))
    assert "or 'ties' for an op such as max" in str(info.value)
