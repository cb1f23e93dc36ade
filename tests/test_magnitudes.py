"""The rounding-error magnitude interpreter: values, hand-computed magnitudes, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjpcheck._magnitudes import evaluate


def _softmax_vjp(x, g):
    _, pullback = jax.vjp(jax.nn.softmax, x)
    return pullback(g)[0]


def _gather(x, i):
    return x[i] * 2.0


@jax.jit
def _jitted_product(a, b):
    return a * b + 1.0


def _calls_jitted_helper(a, b):
    return jnp.sum(_jitted_product(a, b))


def _relu_sum(a, b):
    return jax.nn.relu(a - b)


@jax.custom_vjp
def _scaled(a, b):
    return 3.0 * a * b


_scaled.defvjp(lambda a, b: (_scaled(a, b), (a, b)), lambda res, g: (3.0 * g * res[1], 3.0 * g * res[0]))


A = jnp.array([0.5, -1.25, 2.0, 3.5])
B = jnp.array([1.5, 0.75, -2.0, 0.125])
MATRIX = jnp.arange(12.0).reshape(3, 4) / 7.0
INDICES = jnp.array([3, 0, 0, 2], jnp.int32)

SAME_VALUE_CASES = {
    "vector dot": (lambda a, b: jnp.dot(a, b), (A, B)),
    "matrix vector": (lambda m, b: m @ b, (MATRIX, B)),
    "softmax vjp": (_softmax_vjp, (A, B)),
    "gather": (_gather, (A, INDICES)),
    "relu custom_jvp": (_relu_sum, (A, B)),
    "jit helper": (_calls_jitted_helper, (A, B)),
    "custom_vjp": (_scaled, (A, B)),
}


@pytest.mark.parametrize("name", list(SAME_VALUE_CASES))
def test_evaluate_matches_direct_call(name):
    fn, args = SAME_VALUE_CASES[name]

    value, magnitude = evaluate(fn, args, [None] * len(args))

    expected = fn(*args)
    assert value.shape == expected.shape
    assert value.dtype == expected.dtype
    # Equal bit for bit on CPU. A compiled call may fuse a multiply and an add into one
    # FMA on other backends, so allow a few float32 ulps.
    np.testing.assert_allclose(value, expected, rtol=1e-6, atol=0.0)
    assert magnitude.shape == expected.shape


def test_evaluate_returns_output_pytree():
    value, magnitude = evaluate(lambda a, b: {"sum": a + b, "pair": (a, b * 2.0)}, (A, B), [None, None])

    assert set(value) == {"sum", "pair"}
    np.testing.assert_array_equal(value["pair"][1], B * 2.0)
    np.testing.assert_array_equal(magnitude["pair"][0], np.zeros(4))


def test_relu_is_custom_jvp():
    assert isinstance(jax.nn.relu, jax.custom_jvp)


# ----------------------------------------------------------------------------------
# Magnitude rules on hand-computed cases


def test_product_of_exact_inputs():
    a = jnp.array([2.0, -3.0, 0.5])
    b = jnp.array([-4.0, 0.5, 0.0])

    value, magnitude = evaluate(lambda a, b: a * b, (a, b), [None, None])

    np.testing.assert_array_equal(value, [-8.0, -1.5, 0.0])
    # Each product's own rounding: |a * b| plus the error of an underflow.
    info = np.finfo(np.float32)
    underflow = info.smallest_normal / info.eps
    np.testing.assert_allclose(magnitude, [8.0 + underflow, 1.5 + underflow, underflow], rtol=1e-6)


def test_product_propagates_input_magnitudes():
    a = jnp.array([2.0, -3.0])
    b = jnp.array([-4.0, 0.5])
    ma = jnp.array([1.0, 0.0])
    mb = jnp.array([0.0, 2.0])

    _, magnitude = evaluate(lambda a, b: a * b, (a, b), [ma, mb])

    # ma |b| + |a| mb + |a b| = [4 + 0 + 8, 0 + 6 + 1.5].
    np.testing.assert_array_equal(magnitude, [12.0, 7.5])


def test_dot_product_of_exact_inputs():
    a = jnp.array([1.0, -2.0, 3.0])
    b = jnp.array([4.0, 5.0, -6.0])

    value, magnitude = evaluate(jnp.dot, (a, b), [None, None])

    assert float(value) == -24.0
    assert float(magnitude) == 32.0


def test_dot_product_propagates_input_magnitudes():
    a = jnp.array([1.0, -2.0, 3.0])
    b = jnp.array([4.0, 5.0, -6.0])
    ma = jnp.array([0.5, 0.0, 1.0])
    mb = jnp.array([0.0, 2.0, 0.0])

    _, magnitude = evaluate(jnp.dot, (a, b), [ma, mb])

    # ma . |b| = 2 + 6, |a| . mb = 4, |a| . |b| = 32.
    assert float(magnitude) == 44.0


def test_sum_adds_magnitudes_and_size():
    a = jnp.array([1.0, -3.0])
    b = jnp.array([2.0, 1.0])
    ma = jnp.array([0.5, 1.0])
    mb = jnp.array([0.25, 0.0])

    value, magnitude = evaluate(lambda a, b: a + b, (a, b), [ma, mb])

    np.testing.assert_array_equal(value, [3.0, -2.0])
    np.testing.assert_array_equal(magnitude, [3.75, 3.0])


def test_difference_adds_magnitudes():
    a = jnp.array([5.0])
    b = jnp.array([5.0])

    value, magnitude = evaluate(lambda a, b: a - b, (a, b), [jnp.array([1.0]), jnp.array([2.0])])

    assert float(value[0]) == 0.0
    assert float(magnitude[0]) == 3.0


def test_reduce_sum_of_exact_input():
    a = jnp.array([1.0, -2.0, 4.0])

    value, magnitude = evaluate(jnp.sum, (a,), [None])

    assert float(value) == 3.0
    assert float(magnitude) == 7.0


def test_moves_apply_to_magnitudes():
    a = jnp.array([[1.0, -2.0], [3.0, -4.0]])
    ma = jnp.array([[0.1, 0.2], [0.3, 0.4]])

    value, magnitude = evaluate(lambda a: -a.T.reshape(4)[1:], (a,), [ma])

    np.testing.assert_array_equal(value, [-3.0, 2.0, 4.0])
    np.testing.assert_array_equal(magnitude, np.array([0.3, 0.2, 0.4], np.float32))


def test_one_class_softmax_vjp_by_hand():
    s = jnp.array([1.0])
    g = jnp.array([3.0])

    value, magnitude = evaluate(lambda s, g: s * g - s * (s * g), (s, g), [None, None])

    # m(s g) = 3, m(s (s g)) = |s| 3 + 3 = 6, m(difference) = 3 + 6 + |0|.
    assert float(value[0]) == 0.0
    assert float(magnitude[0]) == 9.0


def test_one_class_softmax_vjp_from_jax():
    x = jnp.array([0.7])
    g = jnp.array([3.0])

    value, magnitude = evaluate(_softmax_vjp, (x, g), [None, None])

    assert float(value[0]) == 0.0
    assert float(magnitude[0]) > 0.0


def test_quotient_follows_derivatives():
    a = jnp.array([6.0])
    b = jnp.array([-2.0])

    value, magnitude = evaluate(lambda a, b: a / b, (a, b), [jnp.array([1.0]), jnp.array([0.5])])

    # (m(a) + |a / b| m(b)) / |b| + |a / b| = (1 + 1.5) / 2 + 3.
    assert float(value[0]) == -3.0
    assert float(magnitude[0]) == 4.25


def test_elementwise_function_uses_derivative():
    a = jnp.array([1.0])

    value, magnitude = evaluate(jnp.exp, (a,), [jnp.array([0.5])])

    # |exp'(1)| 0.5 + |exp(1)|.
    np.testing.assert_allclose(magnitude, 1.5 * np.exp(1.0), rtol=1e-6)
    np.testing.assert_allclose(value, np.exp(1.0), rtol=1e-6)


def test_jit_helper_matches_inlined_magnitudes():
    inlined = lambda a, b: jnp.sum(a * b + 1.0)  # noqa: E731

    _, through_jit = evaluate(_calls_jitted_helper, (A, B), [None, None])
    _, direct = evaluate(inlined, (A, B), [None, None])

    assert float(through_jit) == float(direct)
    assert float(direct) > 0.0


def test_custom_vjp_matches_inlined_magnitudes():
    _, through_call = evaluate(_scaled, (A, B), [None, None])
    _, direct = evaluate(lambda a, b: 3.0 * a * b, (A, B), [None, None])

    np.testing.assert_array_equal(through_call, direct)


def test_relu_magnitude_through_custom_jvp():
    a = jnp.array([2.0, -1.0])

    value, magnitude = evaluate(jax.nn.relu, (a,), [jnp.array([0.5, 0.5])])

    np.testing.assert_array_equal(value, [2.0, 0.0])
    # max(a, 0) passes a's magnitude where a > 0 and adds its own rounding: |value|
    # plus the error of an underflow, smallest_normal / eps.
    info = np.finfo(np.float32)
    underflow = info.smallest_normal / info.eps
    np.testing.assert_allclose(magnitude, [2.5 + underflow, underflow], rtol=1e-6)


def test_gather_moves_magnitudes():
    x = jnp.array([1.0, -2.0, 3.0])
    mx = jnp.array([0.1, 0.2, 0.3])
    i = jnp.array([2, 0], jnp.int32)

    value, magnitude = evaluate(lambda x, i: x[i], (x, i), [mx, None])

    np.testing.assert_array_equal(value, [3.0, 1.0])
    np.testing.assert_array_equal(magnitude, np.array([0.3, 0.1], np.float32))


# ----------------------------------------------------------------------------------
# jit and integer outputs


def test_evaluate_inside_jit():
    a = jnp.array([2.0, -3.0])
    b = jnp.array([-4.0, 0.5])

    @jax.jit
    def kernel(a, b):
        return evaluate(lambda a, b: jnp.dot(a, b) * a, (a, b), [None, None])

    value, magnitude = kernel(a, b)
    eager_value, eager_magnitude = evaluate(lambda a, b: jnp.dot(a, b) * a, (a, b), [None, None])

    np.testing.assert_array_equal(value, [-19.0, 28.5])
    np.testing.assert_array_equal(value, eager_value)
    np.testing.assert_array_equal(magnitude, eager_magnitude)


def test_integer_output_gets_none():
    value, magnitude = evaluate(jnp.argmax, (A,), [None])

    assert int(value) == 3
    assert magnitude is None


def test_integer_arithmetic_gets_none():
    value, magnitude = evaluate(lambda i: i * 2 + 1, (INDICES,), [None])

    np.testing.assert_array_equal(value, [7, 1, 1, 5])
    assert magnitude is None


def test_mixed_outputs_none_only_for_integers():
    value, magnitude = evaluate(lambda x: (jnp.argmax(x), x * 2.0), (A,), [None])

    assert int(value[0]) == 3
    assert magnitude[0] is None
    np.testing.assert_array_equal(magnitude[1], np.abs(A) * 2.0)
