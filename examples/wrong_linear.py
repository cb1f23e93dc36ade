"""A linear layer whose weight gradient is wrong in a way square matrices hide.

``jnp.outer(x, g)`` has shape (d, h); reshaping it to W's shape (h, d) makes the shapes
agree, but the values are right only when h == 1 or d == 1. Try it:

    vjpcheck check examples/wrong_linear.py
"""

import jax.numpy as jnp

import vjpcheck as vc


@vc.rule("(h,d),(d),(h)->(h)", data="x")
def wrong_linear(W, x, b):
    return W @ x + b


@wrong_linear.vjp
def _(W, x, b, out, g):
    return jnp.outer(x, g).reshape(W.shape), W.T @ g, g
