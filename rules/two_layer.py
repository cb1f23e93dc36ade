"""A two-layer classifier built from the worked rules, and its gradients by hand.

    loss = cross_entropy(softmax(W2 relu(W1 x + b1) + b2), label)

`two_layer_classifier` registers the network as a chain, so ``vjpcheck check`` runs
each rule's VJP in reverse order and compares every parameter's cotangent with
jax.vjp of the composed references. `backprop` spells out the same reverse pass.
"""

import jax.numpy as jnp

import vjpcheck as vc
from rules.cross_entropy import cross_entropy, cross_entropy_vjp
from rules.linear import linear, linear_vjp
from rules.relu import relu, relu_vjp
from rules.softmax import softmax, softmax_vjp

two_layer_classifier = vc.chain(
    linear, relu, linear, softmax, cross_entropy, name="two_layer_classifier"
)


def loss(params, x, label):
    """Return the classifier's loss; jax.grad of it uses the hand-written rules."""
    hidden = relu(linear(params["W1"], x, params["b1"]))
    return cross_entropy(softmax(linear(params["W2"], hidden, params["b2"])), label)


def reference_loss(params, x, label):
    """Compute the same loss in plain jax.numpy, for JAX to differentiate."""
    hidden = jnp.maximum(params["W1"] @ x + params["b1"], 0.0)
    logits = params["W2"] @ hidden + params["b2"]
    p = jnp.exp(logits - jnp.max(logits))
    return -jnp.log(p[label] / jnp.sum(p))


def backprop(params, x, label):
    """Return the gradient of `loss` for every parameter, one hand-written VJP at a time."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    z1 = linear(W1, x, b1)
    h = relu(z1)
    z2 = linear(W2, h, b2)
    p = softmax(z2)
    out = cross_entropy(p, label)

    g_p, _ = cross_entropy_vjp(p, label, out, jnp.ones_like(out))
    (g_z2,) = softmax_vjp(z2, p, g_p)
    g_W2, g_h, g_b2 = linear_vjp(W2, h, b2, z2, g_z2)
    (g_z1,) = relu_vjp(z1, h, g_h)
    g_W1, _, g_b1 = linear_vjp(W1, x, b1, z1, g_z1)
    return {"W1": g_W1, "b1": g_b1, "W2": g_W2, "b2": g_b2}
