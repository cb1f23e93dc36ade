"""Jitted kernels, cached per rule, and the evaluation of a chain link by link.

Each kernel is built once per rule and jitted, so JAX compiles it once per shape and
dtype. A chain is evaluated with the kernels of its links rather than as one jitted
function: random chains are rarely drawn twice, but their links' shapes repeat, so the
links' compilations are shared by every chain that contains them.

The rule runs with the user's own 64-bit setting (turned on only for float64), because
a rule that builds constants with ``jnp.ones`` gets float64 constants in 64-bit mode
and would fail a check that it passes in the user's code. The truth runs in float64.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vjpcheck import _magnitudes as magnitudes
from vjpcheck import _numerics as num
from vjpcheck._chains import Chain
from vjpcheck._errors import InvalidSpec
from vjpcheck._report import short_array
from vjpcheck._rules import Rule

_CACHE_SIZE = 4096


def restrict(fn: Callable, primals: Sequence[Any], argnums: Sequence[int]) -> Callable:
    """``fn`` as a function of the inputs in ``argnums`` only, the others held fixed."""

    def restricted(*inputs):
        full = list(primals)
        for i, value in zip(argnums, inputs):
            full[i] = value
        return fn(*full)

    return restricted


def _float_cotangents(rule: Rule, returned: Sequence[Any], primals: Sequence[Any]) -> list[Any]:
    # None is JAX's symbolic zero, so it stands for a zero cotangent.
    return [
        jnp.zeros_like(primals[i]) if returned[i] is None else returned[i]
        for i in rule.float_inputs
    ]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def rule_forward(rule: Rule) -> Callable:
    """Jitted: (primals, their error magnitudes) -> the rule's output and its magnitude."""
    return jax.jit(
        lambda primals, sizes: magnitudes.evaluate(lambda p: rule.raw_vjp(*p)[0], [primals], [sizes])
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def rule_pullback(rule: Rule) -> Callable:
    """Jitted: (primals, sizes, g, size) -> the rule's cotangents for the real inputs and
    their error magnitudes, given those of the primals and of g (None when exact)."""

    def backward(primals, cotangent):
        _, pullback = rule.raw_vjp(*primals)
        return _float_cotangents(rule, pullback(cotangent), primals)

    return jax.jit(
        lambda primals, sizes, g, size: magnitudes.evaluate(backward, [primals, g], [sizes, size])
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def truth_pullback(rule: Rule) -> Callable:
    """Jitted: (primals, sizes, g, size) -> jax.vjp of the reference, with magnitudes."""

    def backward(primals, cotangent):
        _, pullback = jax.vjp(rule.reference, *primals)
        pulled = pullback(cotangent)
        return [pulled[i] for i in rule.float_inputs]

    return jax.jit(
        lambda primals, sizes, g, size: magnitudes.evaluate(backward, [primals, g], [sizes, size])
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def autodiff_pullback(rule: Rule) -> Callable:
    """Jitted: (primals, g) -> jax.vjp of the reference, to measure JAX's own error."""

    def backward(primals, cotangent):
        _, pullback = jax.vjp(rule.reference, *primals)
        pulled = pullback(cotangent)
        return [pulled[i] for i in rule.float_inputs]

    return jax.jit(backward)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def reference_forward(rule: Rule) -> Callable:
    """Jitted: (primals, sizes) -> the reference's output and its error magnitude."""
    return jax.jit(
        lambda primals, sizes: magnitudes.evaluate(lambda p: rule.reference(*p), [primals], [sizes])
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def plain_reference_forward(rule: Rule) -> Callable:
    """Jitted: (primals, sizes) -> the reference's output, and None for the magnitude."""
    return jax.jit(lambda primals, sizes: (rule.reference(*primals), None))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def adjoint_kernel(rule: Rule) -> Callable:
    """Jitted, in float64: both oracles' sides of the adjoint identity."""
    reference = rule.reference
    function = reference if reference is not None else rule.primal
    argnums = rule.float_inputs

    def run(primals, tangents, cotangent, step):
        result = {
            "fd": num.directional_difference(function, primals, tangents, argnums, cotangent, step),
            "fd_2h": num.directional_difference(function, primals, tangents, argnums, cotangent, 2 * step),
            "rounding": num.difference_rounding(function, primals, tangents, argnums, cotangent, step),
        }
        if reference is not None:
            inputs = tuple(primals[i] for i in argnums)
            _, derivative = jax.jvp(restrict(reference, primals, argnums), inputs, tuple(tangents))
            result["jvp"] = num.vdot(cotangent, derivative)
        return result

    return jax.jit(run)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def flattening_kernel(rule: Rule, index: int) -> Callable:
    """Jitted, in float64: Phi^-1(J^T Phi(U)) for input ``index``."""
    reference = rule.reference

    def run(primals, cotangent):
        shape = primals[index].shape

        def flat_function(flat_input):
            full = list(primals)
            full[index] = flat_input.reshape(shape)
            return reference(*full).reshape(-1)

        jacobian = jax.jacfwd(flat_function)(primals[index].reshape(-1))
        return (jacobian.T @ cotangent.reshape(-1)).reshape(shape)

    return jax.jit(run)


# ----------------------------------------------------------------------------------
# Pullbacks of a rule or a chain, in the dtype under test and in float64


@dataclasses.dataclass
class Pullbacks:
    """Cotangents for a rule's real inputs, from the rule and from the oracles.

    Without a reference, only ``obtained`` and ``obtained_sizes`` are set.
    """

    obtained: list[Any]
    # Magnitudes of the terms behind each obtained cotangent.
    obtained_sizes: list[Any]
    # JAX's autodiff of the reference in `num.AUTODIFF_DTYPE`, to measure its error.
    autodiff: list[Any] | None = None
    expected: list[Any] | None = None
    expected_sizes: list[Any] | None = None
    # (value in the dtype, value in float64, kinks) for intermediate values.
    kinks: list[tuple[Any, Any, tuple[float, ...]]] = dataclasses.field(default_factory=list)

    def scales(self) -> list[np.ndarray]:
        """Per element: the larger magnitude of the two computations plus |expected|."""
        return [
            np.maximum(np.asarray(a, np.float64), np.asarray(b, np.float64)) + np.abs(np.asarray(e, np.float64))
            for a, b, e in zip(self.obtained_sizes, self.expected_sizes, self.expected)
        ]


def pullbacks(rule: Rule, dtype: np.dtype, primals: Sequence[np.ndarray], cotangent: np.ndarray) -> Pullbacks:
    """Evaluate the rule's cotangents and, when it has a reference, the oracles'."""
    if isinstance(rule, Chain):
        return _chain_pullbacks(rule, dtype, primals, cotangent)
    low, autodiff_inputs, high = (
        _cast(primals, cotangent, dtype),
        _cast(primals, cotangent, num.AUTODIFF_DTYPE),
        _cast(primals, cotangent, np.float64),
    )
    with num.x64_mode(dtype):
        obtained, obtained_sizes = rule_pullback(rule)(low[0], None, low[1], None)
    result = Pullbacks(obtained, obtained_sizes)
    if rule.reference is not None:
        with num.x64_mode(num.AUTODIFF_DTYPE):
            result.autodiff = autodiff_pullback(rule)(*autodiff_inputs)
        with num.truth_mode():
            result.expected, result.expected_sizes = truth_pullback(rule)(high[0], None, high[1], None)
    return result


def _cast(primals, cotangent, dtype) -> tuple[tuple, np.ndarray]:
    with num.x64_mode(dtype):
        return num.cast_floats(primals, dtype), np.asarray(cotangent, dtype)


def _chain_pullbacks(chain: Chain, dtype: np.dtype, primals, cotangent) -> Pullbacks:
    # Three forward passes, each link feeding the next: the rules in the dtype, the
    # references in the autodiff dtype (for JAX's own error) and the references in
    # float64 (the truth).
    tracks = [
        (dtype, rule_forward),
        (num.AUTODIFF_DTYPE, plain_reference_forward),
        (np.dtype(np.float64), reference_forward),
    ]
    forwards = [_chain_forward(chain, primals, d, forward) for d, forward in tracks]
    (rule_args, rule_sizes), (autodiff_args, _), (truth_args, truth_sizes) = forwards
    kinks = [
        (rule_args[k][link.data_index], truth_args[k][link.data_index], link.kinks[link.data_index])
        for k, link in enumerate(chain.links)
        if k > 0 and link.data_index in link.kinks
    ]

    g = [np.asarray(cotangent, d) for d, _ in tracks]
    sizes: list[Any] = [None, None, None]
    per_link: list[dict[int, tuple]] = [{} for _ in chain.links]
    for k in reversed(range(len(chain.links))):
        link = chain.links[k]
        with num.x64_mode(dtype):
            obtained, obtained_sizes = rule_pullback(link)(tuple(rule_args[k]), tuple(rule_sizes[k]), g[0], sizes[0])
        with num.x64_mode(num.AUTODIFF_DTYPE):
            autodiff = autodiff_pullback(link)(tuple(autodiff_args[k]), g[1])
        with num.truth_mode():
            expected, expected_sizes = truth_pullback(link)(tuple(truth_args[k]), tuple(truth_sizes[k]), g[2], sizes[2])
        columns = (obtained, obtained_sizes, autodiff, expected, expected_sizes)
        for position, i in enumerate(link.float_inputs):
            per_link[k][i] = tuple(column[position] for column in columns)
        obtained_g, obtained_size, autodiff_g, expected_g, expected_size = per_link[k][link.data_index]
        g = [obtained_g, autodiff_g, expected_g]
        sizes = [obtained_size, None, expected_size]

    columns: list[list[Any]] = [[] for _ in range(5)]
    for j in chain.float_inputs:
        k, i = chain.sources[j]
        for column, value in zip(columns, per_link[k][i]):
            column.append(value)
    return Pullbacks(*columns, kinks=kinks)


def _chain_forward(chain: Chain, primals, dtype, forward) -> tuple[list[list[Any]], list[list[Any]]]:
    """Run the links forward; return the arguments each link received, and their error
    magnitudes (None for the drawn inputs, which are exact)."""
    with num.x64_mode(dtype):
        primals = num.cast_floats(primals, dtype)
        value, size = primals[0], None
        arguments, sizes = [], []
        for link, args in zip(chain.links, chain.link_arguments(primals)):
            args[link.data_index] = value
            arg_sizes = [None] * len(args)
            arg_sizes[link.data_index] = size
            arguments.append(args)
            sizes.append(arg_sizes)
            value, size = forward(link)(tuple(args), tuple(arg_sizes))
    return arguments, sizes


# ----------------------------------------------------------------------------------
# Structure


_structure_cache: dict[Any, list[str]] = {}


def structure_problems(rule: Rule, primals: Sequence[Any], cotangent: Any, dtype: np.dtype, output_shape) -> list[str]:
    """Trace the rule abstractly and list what is wrong with what its backward returns.

    The result depends only on shapes and dtypes, so it is cached on them.
    """
    key = (
        rule,
        tuple((np.shape(p), np.asarray(p).dtype.str) for p in primals),
        np.shape(cotangent),
        np.dtype(dtype).str,
        bool(jax.config.jax_enable_x64),
    )
    if key not in _structure_cache:
        _structure_cache[key] = _trace_structure(rule, primals, cotangent, dtype, output_shape)
    return _structure_cache[key]


def _trace_structure(rule, primals, cotangent, dtype, output_shape) -> list[str]:
    if isinstance(rule, Chain):
        return _chain_structure(rule, primals, dtype)

    def run(p, g):
        out, backward = rule.raw_vjp(*p)
        return out, backward(g)

    with num.x64_mode(dtype):
        try:
            out, returned = jax.eval_shape(run, tuple(primals), cotangent)
        except TypeError as error:
            if "not a valid JAX type" not in str(error):
                raise
            return [f"the backward rule returned a value that is not an array: {error}"]
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(output_shape):
        raise InvalidSpec(
            f"rule {rule.name!r}: the op returned {short_array(out)} but signature "
            f"{rule.signature.text!r} gives the output shape {tuple(output_shape)} for these "
            "inputs; correct the signature's output or the op."
        )
    return returned_problems(rule, primals, returned)


def _chain_structure(chain: Chain, primals, dtype) -> list[str]:
    with num.x64_mode(dtype):
        shapes = jax.eval_shape(lambda p: chain_forward_shapes(chain, p), tuple(primals))
    problems = []
    for link, args in zip(chain.links, shapes):
        args = [np.zeros(a.shape, a.dtype) for a in args]
        out_shape = link.signature.shapes(_sizes_of(link, args))[1]
        cotangent = np.zeros(out_shape, dtype)
        for problem in structure_problems(link, args, cotangent, dtype, out_shape):
            problems.append(f"in link {link.name!r} ({link.location}): {problem}")
    return problems


def chain_forward_shapes(chain: Chain, primals):
    value = primals[0]
    arguments = []
    for link, args in zip(chain.links, chain.link_arguments(primals)):
        args[link.data_index] = value
        arguments.append(args)
        value = link.raw_vjp(*args)[0]
    return arguments


def _sizes_of(rule: Rule, args: Sequence[Any]) -> dict[str, int]:
    sizes = {}
    for core, arg in zip(rule.signature.inputs, args):
        for dim, size in zip(core, np.shape(arg)):
            if isinstance(dim, str):
                sizes[dim] = size
    return sizes


def returned_problems(rule: Rule, primals: Sequence[Any], returned: Any) -> list[str]:
    """List what is wrong with the (abstract) value that a backward rule returned."""
    n = len(rule.arg_names)
    names = ", ".join(rule.arg_names)
    if isinstance(returned, list):
        return [f"the backward rule returned a list; return a tuple of {n} cotangents ({names})."]
    if not isinstance(returned, tuple):
        what = short_array(returned) if hasattr(returned, "shape") else type(returned).__name__
        return [
            f"the backward rule returned a single {what}; return a tuple with one cotangent "
            f"per input ({names}), such as (g,) for one input."
        ]
    if len(returned) != n:
        return [f"the backward rule returned {len(returned)} cotangents for {n} inputs ({names})."]
    problems = []
    for i, (name, spec, cotangent) in enumerate(zip(rule.arg_names, rule.specs, returned)):
        primal = primals[i]
        if cotangent is None:
            continue
        label = f"cotangent for {name!r} (input {i})"
        if not hasattr(cotangent, "shape"):
            problems.append(f"{label} is a {type(cotangent).__name__}; expected an array.")
            continue
        if spec.kind == "index":
            if np.dtype(cotangent.dtype) != jax.dtypes.float0 or cotangent.shape != np.shape(primal):
                problems.append(
                    f"{label} is {short_array(cotangent)}; an integer input takes None or a "
                    f"float0 array of shape {np.shape(primal)}."
                )
            continue
        if cotangent.shape != np.shape(primal) or np.dtype(cotangent.dtype) != np.asarray(primal).dtype:
            problems.append(
                f"{label} is {short_array(cotangent)}; expected {short_array(primal)}, "
                "the shape and dtype of the input."
            )
    return problems
