"""The worked rules, the two-layer classifier and JAX's built-ins pass every property."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rules
import vjpcheck as vc
from examples import jax_builtins
from rules import two_layer

WORKED = [rules.linear, rules.relu, rules.softmax, rules.cross_entropy, rules.two_layer_classifier]
BUILTINS = [jax_builtins.softmax, jax_builtins.log_softmax, jax_builtins.relu, jax_builtins.logsumexp]
POOL = WORKED + BUILTINS


@pytest.mark.parametrize("rule", WORKED + BUILTINS, ids=lambda r: r.name)
def test_rule_passes_every_property(rule):
    report = vc.check(rule, pool=POOL, max_examples=15, max_side=3)
    failed = [r for r in report.results if r.outcome not in ("passed", "not applicable")]
    assert failed == []


def test_two_layer_chain_has_five_links():
    names = [link.name for link in rules.two_layer_classifier.links]
    assert names == ["linear", "relu", "linear", "softmax", "cross_entropy"]


def finite_arrays(shape):
    return hnp.arrays(np.float32, shape, elements=st.floats(-2, 2, width=32))


@settings(max_examples=25, deadline=None)
@given(
    W1=finite_arrays((3, 2)),
    b1=finite_arrays((3,)),
    W2=finite_arrays((4, 3)),
    b2=finite_arrays((4,)),
    x=finite_arrays((2,)),
    label=st.integers(0, 3),
)
def test_backprop_matches_jax_grad(W1, b1, W2, b2, x, label):
    params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    hidden = W1 @ x + b1
    # ReLU's derivative is undefined at 0; keep the hidden units off it.
    if np.any(np.abs(hidden) < 1e-3):
        hidden = None
    obtained = two_layer.backprop(params, x, label)
    expected = jax.grad(two_layer.reference_loss)(params, x, label)
    for name in params:
        if hidden is None and name in ("W1", "b1"):
            continue
        np.testing.assert_allclose(obtained[name], expected[name], rtol=2e-4, atol=2e-5)


def test_loss_gradient_uses_hand_rules():
    params = {
        "W1": jnp.array([[0.5, -1.0], [2.0, 0.25], [1.0, 1.0]]),
        "b1": jnp.array([0.1, -0.2, 0.3]),
        "W2": jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]),
        "b2": jnp.array([0.0, 0.1]),
    }
    x, label = jnp.array([1.0, 2.0]), 1
    obtained = jax.grad(two_layer.loss)(params, x, label)
    expected = jax.grad(two_layer.reference_loss)(params, x, label)
    for name in params:
        np.testing.assert_allclose(obtained[name], expected[name], rtol=1e-5, atol=1e-6)


def test_wrong_softmax_example_diagnosed():
    # The README's failure example: its diagnosis line must stay as printed there.
    from examples import wrong_softmax

    rule = wrong_softmax.wrong_softmax
    vc.default_registry.remove(rule)  # keep this wrong rule out of other tests' chains
    with pytest.raises(vc.RuleMismatch) as info:
        vc.check(rule, properties=["matches_autodiff"], dtypes=["float32"], pool=[rule])
    assert (
        "Diagnosis: the cotangent for 'z' uses only the diagonal of the Jacobian: the off-diagonal "
        "terms (how each output depends on the other inputs) are missing." in str(info.value)
    )
