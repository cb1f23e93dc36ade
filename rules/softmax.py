"""Softmax, s = exp(x) / sum(exp(x)), and its VJP.

Derivation. With s_i = exp(x_i) / Z, the partial derivative of s_i with respect to x_j
is s_i (delta_ij - s_j), so the Jacobian is J = diag(s) - s s^T. It is symmetric, and

    J^T g = s * g - s (s . g) = s * (g - s . g).

The outer product s s^T couples every pair of classes. A rule that keeps only the
diagonal, s * (1 - s) * g, agrees with it only when there is a single class.
Subtracting max(x) before exponentiating leaves s unchanged and avoids overflow.
"""

import jax.numpy as jnp

import vjpcheck as vc


@vc.rule("(n)->(n)", output=vc.positive(), second_order=True)
def softmax(x):
    """Return the softmax of the vector x."""
    shifted = jnp.exp(x - jnp.max(x))
    return shifted / jnp.sum(shifted)


@softmax.vjp
def softmax_vjp(x, s, g):
    return (s * (g - jnp.dot(s, g)),)
