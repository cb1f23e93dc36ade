"""The affine map y = W x + b and its VJP.

Derivation. Perturb the inputs by dW, dx and db. The output moves by
dy = dW x + W dx + db, and the cotangent g pairs with it as

    <g, dy> = <g, dW x> + <g, W dx> + <g, db>.

The first term is sum_ij g_i dW_ij x_j = <g x^T, dW>, so the cotangent for W is the
outer product g x^T. It has W's shape (h, d): one row per output, one column per input.
Writing x g^T instead gives a (d, h) array, which has the right shape only when W is
square, and the right values only when it is also symmetric. The second term is
<W^T g, dx>, so the cotangent for x is W^T g, and the third gives g for b.
"""

import jax.numpy as jnp

import vjpcheck as vc


@vc.rule("(h,d),(d),(h)->(h)", data="x", second_order=True)
def linear(W, x, b):
    """Return W @ x + b for W of shape (h, d), x of shape (d,) and b of shape (h,)."""
    return W @ x + b


@linear.vjp
def linear_vjp(W, x, b, out, g):
    return jnp.outer(g, x), W.T @ g, g
