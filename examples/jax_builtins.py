"""The derivatives JAX computes for four of its functions, checked against textbook formulas.

In JAX 0.10.2, jax.nn.relu is a jax.custom_jvp function, with a derivative rule written
by the JAX developers. jax.nn.softmax, jax.nn.log_softmax and jax.scipy.special.logsumexp
have no custom rule of their own, so JAX differentiates their implementations, which
subtract the maximum under lax.stop_gradient. jax.nn.softmax calls a jax.custom_jvp
helper instead when JAX's option jax_softmax_custom_jvp is on, and it is off by default.

Without reference=, vjpcheck.register would compare such a function with JAX's
derivative of itself, which checks nothing, so it raises instead. Each function is
registered here with a textbook reference, whose JAX derivative is the truth:

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
