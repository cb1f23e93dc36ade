"""Register downstream_ops' rules with vjpcheck; the ini setting vjpcheck_targets names this file.

The signatures give the core shapes that vjpcheck draws: a vector x and two scalars
for scaled_tanh, a matrix for normalize_rows. Each op is a jax.custom_vjp function,
so vjpcheck checks its rule against JAX's derivative of the undecorated function.
"""

import vjpcheck as vc
from downstream_ops import normalize_rows, scaled_tanh

vc.register(
    scaled_tanh, "(n),(),()->(n)", name="scaled_tanh", data="x",
    specs={"a": vc.real(-3, 3), "b": vc.real(-3, 3)},
)
vc.register(normalize_rows, "(m,n)->(m,n)", name="normalize_rows")
