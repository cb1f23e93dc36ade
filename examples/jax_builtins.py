"""JAX's own derivative rules for four functions, checked against textbook formulas.

jax.nn.softmax, jax.nn.log_softmax, jax.nn.relu and jax.scipy.special.logsumexp carry
custom derivative rules written by the JAX developers. Registering them with plain
references lets vjpcheck test those rules like any other:

    vjpcheck check examples/jax_builtins.py
"""

import jax
import jax.numpy as jnp
import jax.scipy.special

import vjpcheck as vc


def textbook_softmax(x):
    return jnp.exp(x) / jnp.sum(jnp.exp(x))


def textbook_log_softmax(x):
    return x - jnp.log(jnp.sum(jnp.exp(x)))


def textbook_relu(x):
    return jnp.where(x > 0, x, 0.0)


def textbook_logsumexp(x):
    return jnp.log(jnp.sum(jnp.exp(x)))


softmax = vc.register(
    jax.nn.softmax, "(n)->(n)", name="jax.nn.softmax",
    reference=textbook_softmax, output=vc.positive(),
)
log_softmax = vc.register(
    jax.nn.log_softmax, "(n)->(n)", name="jax.nn.log_softmax",
    reference=textbook_log_softmax,
)
relu = vc.register(
    jax.nn.relu, "(n)->(n)", name="jax.nn.relu",
    reference=textbook_relu, kinks=[0.0],
)
logsumexp = vc.register(
    jax.scipy.special.logsumexp, "(n)->()", name="jax.scipy.special.logsumexp",
    reference=textbook_logsumexp,
)
