"""Evaluate a function while tracking a first-order bound on its rounding error.

Rounding error in floating point is proportional to the size of the terms that were
added up, not to the size of the result: softmax's VJP for a single class computes
s * g - s * (s * g), exactly 0 in real arithmetic but about eps * |g| in floating
point. To judge such results, vjpcheck runs the function's jaxpr through a small
interpreter that carries, next to each value v, a magnitude m >= 0 such that the
rounding error in v is at most about eps * m: a running error bound, as in Wilkinson's
forward error analysis, to first order in eps. Exact inputs start at m = 0.

- Sums add the operands' magnitudes and their own rounding:
  m(a + b) = m(a) + m(b) + |a + b|.
- Products and other multilinear maps (mul, dot_general, sums over axes) propagate
  each operand's magnitude with the others at their absolute values, and add the sum
  of the absolute terms: m(x . y) = m(x) . |y| + |x| . m(y) + |x| . |y|.
- Reshapes, slices, gathers, selects and other moves apply themselves to m.
- A quotient follows its derivatives: m(a / b) = (m(a) + |a / b| m(b)) / |b| + |a / b|.
- Every other primitive with a JVP rule (exp, log, tanh, max, ...) propagates each
  operand's magnitude through it: m(f(a)) = |f'(a)| m(a) + |f(a)|.
- The own rounding of an operation, |v| above, also counts the error of an underflow
  to zero, smallest_normal / eps. A result that is later multiplied by a large number
  keeps that error in view.
- A bound that overflows stays infinite: the error of that value is unknown.

The interpreter runs inside `jax.jit`, so it costs about one extra pass over the same
operations and is compiled with the kernel that calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core

_SUMS = {"add", "add_any", "sub"}
# Linear in each real operand, so the magnitude propagates through one operand at a
# time with the others at their absolute values.
_MULTILINEAR = {"mul", "dot_general", "reduce_sum", "cumsum", "scatter-add", "scatter_add"}
# Move or copy elements without arithmetic, so they apply to magnitudes as they are.
_MOVES = {
    "broadcast_in_dim",
    "concatenate",
    "convert_element_type",
    "copy",
    "copy_p",
    "dynamic_slice",
    "dynamic_update_slice",
    "expand_dims",
    "gather",
    "neg",
    "pad",
    "reduce_precision",
    "reshape",
    "rev",
    "select_n",
    "slice",
    "squeeze",
    "stop_gradient",
    "transpose",
}
# Elementwise primitives: each output element depends on the same element of the
# inputs only, so their own rounding is that of one operation. Every other primitive
# that is not listed above (solves, decompositions, reductions, FFTs) gets the
# normwise bound of `_structured_rounding`.
_ELEMENTWISE = {
    "abs", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil",
    "clamp", "cos", "cosh", "digamma", "erf", "erf_inv", "erfc", "exp", "exp2", "expm1",
    "floor", "igamma", "integer_pow", "is_finite", "lgamma", "log", "log1p", "logistic",
    "max", "min", "nextafter", "pow", "reciprocal", "rem", "round", "rsqrt", "sign", "sin",
    "sinh", "sqrt", "square", "tan", "tanh",
}
_CALLS = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "remat", "checkpoint"}


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def evaluate(fn: Callable, args: Sequence[Any], magnitudes: Sequence[Any]) -> tuple[Any, Any]:
    """Return ``fn(*args)`` and the magnitudes of its outputs, as two pytrees.

    ``magnitudes`` has one entry per argument: the magnitude of its rounding error so
    far, or None for an exact argument (zeros) or an integer one.
    """
    values, mags, _ = evaluate_with_overflow(fn, args, magnitudes)
    return values, mags


def evaluate_with_overflow(fn: Callable, args: Sequence[Any], magnitudes: Sequence[Any]) -> tuple[Any, Any, Any]:
    """Like `evaluate`, and also return whether any operation overflowed.

    The flag is a boolean array that is true when some operation turned finite inputs
    into an infinite or NaN value, even if later operations made the result finite
    again (x / inf == 0), or when a finite value's error bound overflowed: such a
    result is not to be trusted.
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    flat_args = jax.tree_util.tree_leaves(list(args))
    flat_magnitudes = [
        jnp.zeros_like(a) if m is None and _is_float(a) else m
        for a, m in zip(flat_args, _match_leaves(args, magnitudes))
    ]
    overflows: list[Any] = []
    values, mags = _eval_jaxpr(closed.jaxpr, closed.consts, flat_args, flat_magnitudes, overflows)
    tree = jax.tree_util.tree_structure(out_shape)
    overflowed = jnp.any(jnp.stack(overflows)) if overflows else jnp.bool_(False)
    return jax.tree_util.tree_unflatten(tree, values), jax.tree_util.tree_unflatten(tree, mags), overflowed


def _match_leaves(args: Sequence[Any], magnitudes: Sequence[Any]) -> list[Any]:
    flat = []
    for arg, magnitude in zip(args, magnitudes):
        leaves = jax.tree_util.tree_leaves(arg)
        if magnitude is None:
            flat += [None] * len(leaves)
        else:
            # None entries stand for exact leaves, so they must not vanish as empty nodes.
            flat += jax.tree_util.tree_leaves(magnitude, is_leaf=lambda x: x is None)
    return flat


def _eval_jaxpr(jaxpr, consts, args, magnitudes, overflows: list[Any]) -> tuple[list[Any], list[Any]]:
    env: dict[Any, tuple[Any, Any]] = {}

    def read(var):
        if isinstance(var, core.Literal):
            value = var.val
            return value, (np.zeros_like(value) if _is_float(value) else None)
        return env[var]

    def write(var, value, magnitude):
        if not isinstance(var, core.DropVar):
            env[var] = (value, magnitude)

    for var, value in zip(jaxpr.constvars, consts):
        write(var, value, jnp.zeros_like(value) if _is_float(value) else None)
    for var, value, magnitude in zip(jaxpr.invars, args, magnitudes):
        write(var, value, magnitude)

    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        values = [v for v, _ in inputs]
        subfuns, params = _bind_params(eqn)
        inner = _inner_jaxpr(eqn) if eqn.primitive.name in _CALLS else None
        if inner is not None:
            inner_jaxpr, inner_consts = inner
            outs, out_mags = _eval_jaxpr(inner_jaxpr, inner_consts, values, [m for _, m in inputs], overflows)
        else:
            outs = eqn.primitive.bind(*subfuns, *values, **params)
            outs = list(outs) if eqn.primitive.multiple_results else [outs]
            out_mags = _magnitudes_of(eqn, subfuns, params, inputs, outs)
            overflows.append(_overflowed(values, outs))
            overflows.append(_unbounded(outs, out_mags))
        for var, value, magnitude in zip(eqn.outvars, outs, out_mags):
            write(var, value, magnitude)

    results = [read(v) for v in jaxpr.outvars]
    return [v for v, _ in results], [m for _, m in results]


def _overflowed(values: Sequence[Any], outs: Sequence[Any]) -> Any:
    """Return whether finite inputs gave a non-finite output in this operation."""
    float_ins = [v for v in values if _is_float(v)]
    float_outs = [o for o in outs if _is_float(o)]
    if not float_outs:
        return jnp.bool_(False)
    inputs_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in float_ins])) if float_ins else True
    outputs_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(o)) for o in float_outs]))
    return jnp.logical_and(inputs_finite, jnp.logical_not(outputs_finite))


def _unbounded(outs: Sequence[Any], mags: Sequence[Any]) -> Any:
    """Return whether a finite value's error bound overflowed, which leaves it unknown."""
    flags = [
        jnp.any(jnp.isfinite(o) & ~jnp.isfinite(m))
        for o, m in zip(outs, mags) if m is not None and _is_float(o)
    ]
    return jnp.any(jnp.stack(flags)) if flags else jnp.bool_(False)


def _bind_params(eqn) -> tuple[list[Any], dict[str, Any]]:
    # Older JAX returns (subfuns, params) here; JAX 0.7 and later return params alone.
    result = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        return list(result[0]), result[1]
    return [], result


def _inner_jaxpr(eqn) -> tuple[Any, Sequence[Any]] | None:
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(name)
        if isinstance(inner, core.ClosedJaxpr):
            inner_jaxpr, consts = inner.jaxpr, inner.consts
        elif isinstance(inner, core.Jaxpr):
            inner_jaxpr, consts = inner, ()
        else:
            continue
        if len(inner_jaxpr.invars) == len(eqn.invars) and len(inner_jaxpr.outvars) == len(eqn.outvars):
            return inner_jaxpr, consts
    return None


def _own_rounding(out: Any) -> Any:
    """Bound an operation's own rounding error, in units of eps: |v| plus underflow.

    An underflow (which XLA flushes to zero) errs by up to the smallest normal number,
    whatever the value, so it counts as smallest_normal / eps.
    """
    info = jnp.finfo(out.dtype)
    return jnp.abs(out) + jnp.asarray(info.smallest_normal / info.eps, out.dtype)


def _magnitudes_of(eqn, subfuns, params, inputs, outs) -> list[Any]:
    sizes = [_own_rounding(o) if _is_float(o) else None for o in outs]
    if not any(_is_float(o) for o in outs) or any(m is None for v, m in inputs if _is_float(v)):
        return sizes
    name = eqn.primitive.name
    if not all(_is_float(o) for o in outs):
        # Mixed outputs, as in lu's factors and pivots: bound the real ones normwise.
        return _structured_rounding(eqn, params, inputs, outs, sizes, backward=False)

    def bind(operands):
        result = eqn.primitive.bind(*subfuns, *operands, **params)
        return list(result) if eqn.primitive.multiple_results else [result]

    if name in _SUMS:
        (_, ma), (_, mb) = inputs
        total = [jnp.broadcast_to(ma + mb, jnp.shape(outs[0])) + sizes[0]]
    elif name in _MOVES:
        total = [jnp.abs(c) for c in bind([m if _is_float(v) else v for v, m in inputs])]
        if name == "convert_element_type":
            total = [t + s for t, s in zip(total, sizes)]
        else:
            sizes = [jnp.abs(o) for o in outs]
    elif name in _MULTILINEAR:
        absolute = [jnp.abs(v) if _is_float(v) else v for v, _ in inputs]
        own = [jnp.abs(c) + (s - jnp.abs(o)) for c, s, o in zip(bind(absolute), sizes, outs)]
        total = [t + o for t, o in zip(_through_each_operand(bind, inputs), own)]
    elif name == "div":
        (a, ma), (b, mb) = inputs
        total = [(ma + sizes[0] * mb) / jnp.abs(b) + sizes[0]]
    else:
        if name not in _ELEMENTWISE:
            sizes = _structured_rounding(eqn, params, inputs, outs, sizes)
        propagated = _through_jvp(eqn, params, inputs, outs, [m for _, m in inputs])
        if propagated is None:
            return sizes
        total = [p + s for p, s in zip(propagated, sizes)]
    # Where the bound overflowed it stays infinite: nothing is known about the error.
    return [t.astype(s.dtype) for t, s in zip(total, sizes)]


def _through_each_operand(bind, inputs) -> list[Any]:
    """Sum over the real operands k of op(|x_1|, ..., m_k, ..., |x_n|)."""
    floats = [k for k, (v, _) in enumerate(inputs) if _is_float(v)]
    total = None
    for k in floats:
        operands = []
        for j, (v, m) in enumerate(inputs):
            if not _is_float(v):
                operands.append(v)
            elif j == k:
                operands.append(m)
            else:
                operands.append(jnp.abs(v))
        term = [jnp.abs(c) for c in bind(operands)]
        total = term if total is None else [t + c for t, c in zip(total, term)]
    return total


def _structured_rounding(eqn, params, inputs, outs, sizes, backward: bool = True) -> list[Any]:
    """Bound the own rounding of a solve, a decomposition or a reduction.

    Each output element comes from many terms, and backward-stable algorithms compute
    the exact result for inputs perturbed by about n eps times their size, with n the
    length of the last input axis. So the bound adds n |J_k (s * |x_k|)| for each
    operand x_k, the largest over a few fixed sign patterns s (one sign pattern alone
    can cancel inside J), and a normwise term, n**2 times the largest output.
    """
    perturbed = None
    if backward:
        for pattern in range(_SIGN_PATTERNS):
            tangents = [_signed(jnp.abs(v), pattern) if _is_float(v) else None for v, _ in inputs]
            pushed = _through_jvp(eqn, params, inputs, outs, tangents)
            if pushed is None:
                break
            perturbed = pushed if perturbed is None else [jnp.maximum(a, b) for a, b in zip(perturbed, pushed)]
    length = max((jnp.shape(v)[-1] for v, _ in inputs if _is_float(v) and jnp.ndim(v)), default=1)
    result = []
    for k, (size, out) in enumerate(zip(sizes, outs)):
        if size is None:
            result.append(None)
            continue
        normwise = length * length * jnp.max(jnp.abs(out)) if jnp.size(out) else 0.0
        extra = length * perturbed[k] if perturbed is not None else 0.0
        result.append(size + extra + normwise)
    return result


_SIGN_PATTERNS = 3


def _signed(size: Any, pattern: int) -> Any:
    """Return ``size`` with fixed signs: all +, alternating +/-, or pseudo-random."""
    if pattern == 0 or jnp.size(size) == 0:
        return size
    shape = jnp.shape(size)
    if pattern == 1:
        signs = 1 - 2 * (np.arange(np.prod(shape)).reshape(shape) % 2)
    else:
        signs = np.random.default_rng(pattern).choice([-1, 1], size=shape)
    return size * jnp.asarray(signs, size.dtype)


def _through_jvp(eqn, params, inputs, outs, tangents) -> list[Any] | None:
    """Sum over the real operands k of |J_k t_k|, from the primitive's JVP rule."""
    values = [v for v, _ in inputs]
    floats = [k for k, v in enumerate(values) if _is_float(v)]
    total = [jnp.zeros_like(o) for o in outs]
    for k in floats:

        def along(x, k=k):
            operands = list(values)
            operands[k] = x
            result = eqn.primitive.bind(*operands, **params)
            return list(result) if eqn.primitive.multiple_results else [result]

        try:
            _, pushed = jax.jvp(along, (values[k],), (tangents[k].astype(jnp.result_type(values[k])),))
        except Exception:  # noqa: BLE001 - a primitive without a JVP rule keeps |v|
            return None
        total = [t + jnp.abs(d) for t, d in zip(total, pushed)]
    return total
