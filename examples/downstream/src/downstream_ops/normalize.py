"""Row-wise L2 normalisation, y = x / r with r = sqrt(sum_j x_j^2 + EPS) per row, and its VJP.

Derivation. For one row, dr = (x . dx) / r, so dy = dx / r - x (x . dx) / r^3. Pairing
with a cotangent g and using y = x / r,

    <g, dy> = <g, dx> / r - (g . y)(y . dx) / r,

so grad_x = (g - y (y . g)) / r, row by row. The term y (y . g) couples the elements
of a row; a rule that keeps only g / r is right only for a cotangent orthogonal to y.
"""

import jax
import jax.numpy as jnp

# Keeps r away from 0 for an all-zero row.
EPS = 1e-6


def _norms(x):
    return jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + EPS)


@jax.custom_vjp
def normalize_rows(x):
    """Divide each row of the matrix x by its L2 norm."""
    return x / _norms(x)


def _normalize_rows_fwd(x):
    r = _norms(x)
    y = x / r
    return y, (y, r)


def _normalize_rows_bwd(residuals, g):
    y, r = residuals
    return ((g - y * jnp.sum(y * g, axis=-1, keepdims=True)) / r,)


normalize_rows.defvjp(_normalize_rows_fwd, _normalize_rows_bwd)
