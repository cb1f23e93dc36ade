"""A softmax whose backward rule keeps only the diagonal of the Jacobian.

The Jacobian of softmax s(z) has entries s_i (delta_ij - s_j). Keeping only its
diagonal gives ``s * (1 - s) * g``, which is right only when there is one class. Try it:

    vjpcheck check examples/wrong_softmax.py --property matches_autodiff
"""

import jax
import jax.numpy as jnp

import vjpcheck as vc


@vc.rule("(n)->(n)")
def wrong_softmax(z):
    return jax.nn.softmax(z)


@wrong_softmax.vjp
def _(z, out, g):
    return (out * (1 - out) * g,)
