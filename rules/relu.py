"""ReLU, y = max(x, 0), and its VJP.

Derivation. ReLU acts on each element alone, so its Jacobian is diagonal, with
entry 1 where x > 0 and 0 where x < 0. Applying the transposed diagonal Jacobian to g
multiplies g elementwise by that mask. At x = 0 ReLU has a kink: any value in [0, 1]
is a valid subgradient. The rule declares the kink, and vjpcheck keeps drawn inputs,
and the values that earlier rules feed into ReLU inside a chain, away from it.

The mask must come from the input. The output cannot tell x = 0 from x < 0, and the
test ``out >= 0`` is true everywhere, which passes every gradient through.
"""

import jax.numpy as jnp

import vjpcheck as vc


@vc.rule("(n)->(n)", kinks=[0.0], second_order=True)
def relu(x):
    """Return max(x, 0) elementwise."""
    return jnp.maximum(x, 0.0)


@relu.vjp
def relu_vjp(x, out, g):
    return (jnp.where(x > 0, g, jnp.zeros_like(g)),)
