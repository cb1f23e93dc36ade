"""Ordinary tests of the ops; vjpcheck's plugin adds one test per rule and property."""

import jax
import jax.numpy as jnp
import numpy as np

import vjpcheck as vc
from downstream_ops import normalize_rows, scaled_tanh


def test_scaled_tanh_values():
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    np.testing.assert_allclose(scaled_tanh(x, 1.5, 0.5), 1.5 * np.tanh(0.5 * x), rtol=1e-6)


def test_grad_uses_the_rule():
    x = jnp.array([0.3, -0.7])
    grad_a = jax.grad(lambda a: jnp.sum(scaled_tanh(x, a, 2.0)))(1.0)
    np.testing.assert_allclose(grad_a, np.sum(np.tanh(2.0 * np.array([0.3, -0.7]))), rtol=1e-6)


def test_rows_have_unit_norm():
    x = jnp.array([[3.0, 4.0], [1.0, -1.0]])
    np.testing.assert_allclose(jnp.linalg.norm(normalize_rows(x), axis=-1), [1.0, 1.0], rtol=1e-5)


def test_check_in_an_ordinary_test():
    # The plugin's tests cover this; an ordinary test may call vjpcheck.check too,
    # which raises vjpcheck.RuleMismatch, an AssertionError, when a property fails.
    rule = vc.register(normalize_rows, "(m,n)->(m,n)", name="normalize_rows_in_test", registry=vc.Registry())
    assert vc.check(rule, properties=["matches_autodiff"], max_examples=20, dtypes=["float32"])
