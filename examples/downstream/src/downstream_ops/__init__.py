"""Two JAX ops with hand-written reverse-mode rules: a scaled tanh and a row-wise norm.

Both are `jax.custom_vjp` functions, so `jax.grad` and `jax.vjp` through them use the
rules written here. The package does not depend on vjpcheck: ``tests/vjp_rules.py``
registers the ops with it, and vjpcheck's pytest plugin checks them.
"""

from downstream_ops.normalize import normalize_rows
from downstream_ops.scaled_tanh import scaled_tanh

__all__ = ["normalize_rows", "scaled_tanh"]
