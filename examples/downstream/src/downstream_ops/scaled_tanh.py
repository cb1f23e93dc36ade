"""y = a * tanh(b * x), with scalars a and b, and its VJP.

Derivation. With t = tanh(b x), dt/du = 1 - t^2 at u = b x, so for a cotangent g

    grad_x = g * a * b * (1 - t^2)            (elementwise)
    grad_a = sum(g * t)                       (a scales every element)
    grad_b = sum(g * a * (1 - t^2) * x)

The two scalar cotangents sum over the whole vector, because a and b enter every
element. A rule that leaves out the sum returns a vector where a scalar belongs.
"""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def scaled_tanh(x, a, b):
    """Return a * tanh(b * x) elementwise, for a vector x and scalars a and b."""
    return a * jnp.tanh(b * x)


def _scaled_tanh_fwd(x, a, b):
    t = jnp.tanh(b * x)
    return a * t, (x, a, b, t)


def _scaled_tanh_bwd(residuals, g):
    x, a, b, t = residuals
    slope = 1 - t * t
    return g * a * b * slope, jnp.sum(g * t), jnp.sum(g * a * slope * x)


scaled_tanh.defvjp(_scaled_tanh_fwd, _scaled_tanh_bwd)
