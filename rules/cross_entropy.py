"""Cross-entropy of a probability vector p against an integer label, -log p[label].

Derivation. Only the entry at the label enters the loss, so the cotangent for p is
zero everywhere except at the label, where d(-log p_y)/dp_y = -1 / p_y:

    grad_p = -g * onehot(label) / p_y,

with g the scalar output cotangent, which scales everything. The label is an integer,
so it has no cotangent: the rule returns None for it.

After softmax, the chain rule gives the familiar one-hot form for the logits z:
J_softmax^T grad_p = s * (grad_p - s . grad_p) = g * (s - onehot(label)).
"""

import jax
import jax.numpy as jnp

import vjpcheck as vc


@vc.rule(
    "(n),()->()",
    specs={"p": vc.positive(0.01, 1.0), "label": vc.index("n")},
    second_order=True,
)
def cross_entropy(p, label):
    """Return -log(p[label])."""
    return -jnp.log(p[label])


@cross_entropy.vjp
def cross_entropy_vjp(p, label, out, g):
    onehot = jax.nn.one_hot(label, p.shape[0], dtype=p.dtype)
    return -g * onehot / p[label], None
