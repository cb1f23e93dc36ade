"""Chains: composing rules, binding dimensions, and back-propagation through them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vjpcheck as vc
from vjpcheck._chains import Chain, feed_problem


@pytest.fixture
def layers(registry):
    @vc.rule("(h,d),(d),(h)->(h)", data="x", registry=registry)
    def linear(W, x, b):
        return W @ x + b

    @linear.vjp
    def _(W, x, b, out, g):
        return jnp.outer(g, x), W.T @ g, g

    @vc.rule("(n)->(n)", kinks=[0.0], registry=registry)
    def relu(x):
        return jnp.maximum(x, 0.0)

    @relu.vjp
    def _(x, out, g):
        return (jnp.where(x > 0, g, 0.0),)

    @vc.rule("(n),()->()", specs={"p": vc.positive(0.01, 1.0), "label": vc.index("n")}, registry=registry)
    def nll(p, label):
        return -jnp.log(p[label])

    @nll.vjp
    def _(p, label, out, g):
        return -g * jax.nn.one_hot(label, p.shape[0], dtype=p.dtype) / p[label], None

    return linear, relu, nll


def test_chain_binds_data_to_output(layers, registry):
    linear, relu, _ = layers
    chain = vc.chain(linear, relu, linear, registry=registry)
    assert chain.signature.text == "(d),(h,d),(h),(h2,h),(h2)->(h2)"
    assert chain.arg_names == ("x", "linear[0].W", "linear[0].b", "linear[2].W", "linear[2].b")


def test_chain_joins_registry(layers, registry):
    linear, relu, _ = layers
    chain = vc.chain(linear, relu, name="layer", registry=registry)
    assert registry.get("layer") is chain


def test_chain_call_composes_functions(layers, registry):
    linear, relu, _ = layers
    chain = vc.chain(linear, relu, registry=registry)
    W, x, b = jnp.array([[1.0, -2.0]]), jnp.array([3.0, 4.0]), jnp.array([0.5])
    np.testing.assert_array_equal(chain(x, W, b), relu(linear(W, x, b)))


def test_chain_backward_matches_jax_grad(layers, registry):
    linear, relu, _ = layers
    chain = vc.chain(linear, relu, linear, registry=registry)
    x = jnp.array([1.0, -2.0])
    W1, b1 = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.3, 0.2]]), jnp.array([0.1, 0.2, -0.3])
    W2, b2 = jnp.array([[1.0, -1.0, 2.0]]), jnp.array([0.0])
    _, backward = chain.raw_vjp(x, W1, b1, W2, b2)
    obtained = backward(jnp.array([1.0]))

    def loss(x, W1, b1, W2, b2):
        return jnp.sum(W2 @ jnp.maximum(W1 @ x + b1, 0.0) + b2)

    expected = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, W1, b1, W2, b2)
    for got, want in zip(obtained, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_chain_rejects_rank_mismatch(layers, registry):
    linear, _, nll = layers
    with pytest.raises(vc.InvalidSpec) as info:
        vc.chain(nll, linear, registry=registry)
    assert "cannot chain 'nll' into 'linear'" in str(info.value)
    assert "the ranks differ" in str(info.value)


def test_chain_rejects_domain_mismatch(layers, registry):
    linear, _, nll = layers
    with pytest.raises(vc.InvalidSpec) as info:
        vc.chain(linear, nll, registry=registry)
    assert "'nll' needs Positive(min_value=0.01, max_value=1.0) for 'p'" in str(info.value)


def test_chain_rejects_nested_chain(layers, registry):
    linear, relu, _ = layers
    inner = vc.chain(linear, relu, registry=registry)
    with pytest.raises(vc.InvalidSpec) as info:
        vc.chain(inner, linear, registry=registry)
    assert "is a chain; pass its links instead" in str(info.value)


def test_feed_problem_accepts_matching_rank(layers):
    linear, relu, _ = layers
    assert feed_problem(linear, relu) is None


def test_registered_chain_passes_check(layers, registry):
    linear, relu, _ = layers
    chain = vc.chain(linear, relu, registry=registry)
    report = vc.check(chain, dtypes=["float32"], max_side=3, max_examples=15)
    outcomes = {r.property: r.outcome for r in report.results}
    assert outcomes == {
        "structure": "passed",
        "matches_autodiff": "passed",
        "adjoint": "passed",
        "flattening": "passed",
        "stability": "passed",
        "composition": "passed",
        "finite_differences": "passed",
        "linearity": "passed",
        "transforms": "passed",
        "determinism": "passed",
        "second_order": "not applicable",
    }


def test_chain_is_a_chain(layers, registry):
    linear, relu, _ = layers
    assert isinstance(vc.chain(linear, relu, registry=registry), Chain)
