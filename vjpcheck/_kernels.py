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
from vjpcheck._diagnosis import shape_hint
from vjpcheck._errors import InvalidSpec
from vjpcheck._report import short_array
from vjpcheck._rules import Rule
from vjpcheck._tree_rules import TreeRule
from vjpcheck._trees import describe, match_cotangent, tuple_problems

_CACHE_SIZE = 4096


def restrict(fn: Callable, primals: Sequence[Any], argnums: Sequence[int]) -> Callable:
    """``fn`` as a function of the inputs in ``argnums`` only, the others held fixed."""

    def restricted(*inputs):
        full = list(primals)
        for i, value in zip(argnums, inputs):
            full[i] = value
        return fn(*full)

    return restricted


def float_cotangents(rule: Rule, returned: Sequence[Any], primals: Sequence[Any]) -> list[Any]:
    # None is JAX's symbolic zero, so it stands for a zero cotangent.
    return [
        jnp.zeros_like(primals[i]) if returned[i] is None else returned[i]
        for i in rule.float_inputs
    ]


def _reference_cotangents(rule: Rule, primals, cotangent) -> list[Any]:
    _, pullback = jax.vjp(rule.reference, *primals)
    pulled = pullback(cotangent)
    return [pulled[i] for i in rule.float_inputs]


def _rule_cotangents(rule: Rule, primals, cotangent) -> list[Any]:
    _, pullback = rule.raw_vjp(*primals)
    return float_cotangents(rule, pullback(cotangent), primals)


def _rule_output_and_cotangents(rule: Rule, primals, cotangent) -> tuple[Any, list[Any]]:
    out, pullback = rule.raw_vjp(*primals)
    return out, float_cotangents(rule, pullback(cotangent), primals)


# The rule's kernels also run JAX's autodiff of the reference when asked, which saves a
# second compilation when the dtype under test is the autodiff dtype (float32).


@functools.lru_cache(maxsize=_CACHE_SIZE)
def rule_forward(rule: Rule, with_autodiff: bool) -> Callable:
    """Jitted: (primals, their error magnitudes, autodiff primals) -> the rule's output,
    its magnitude, and the reference's output on the autodiff primals."""

    def run(primals, sizes, autodiff_primals):
        out, size = magnitudes.evaluate(lambda p: rule.raw_vjp(*p)[0], [primals], [sizes])
        reference_out = rule.reference(*autodiff_primals) if with_autodiff else None
        return out, size, reference_out

    return jax.jit(run)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def rule_pullback(rule: Rule, with_autodiff: bool) -> Callable:
    """Jitted: (primals, sizes, g, size, autodiff primals, autodiff g) -> the op's
    output, the rule's cotangents for the real inputs, their error magnitudes, and
    JAX's autodiff of the reference. Sizes are the inputs' error magnitudes: zeros
    where they are exact."""

    def run(primals, sizes, cotangent, size, autodiff_primals, autodiff_cotangent):
        (out, obtained), (out_size, obtained_sizes) = magnitudes.evaluate(
            lambda p, g: _rule_output_and_cotangents(rule, p, g), [primals, cotangent], [sizes, size]
        )
        autodiff = None
        if with_autodiff:
            autodiff = _reference_cotangents(rule, autodiff_primals, autodiff_cotangent)
        return (out, out_size), obtained, obtained_sizes, autodiff

    return jax.jit(run)


def _reference_output_and_cotangents(rule: Rule, primals, cotangent) -> tuple[Any, list[Any]]:
    out, pullback = jax.vjp(rule.reference, *primals)
    pulled = pullback(cotangent)
    return out, [pulled[i] for i in rule.float_inputs]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def truth_pullback(rule: Rule) -> Callable:
    """Jitted: (primals, sizes, g, size) -> the reference's output and jax.vjp, with
    magnitudes, and whether an operation overflowed on the way."""
    return jax.jit(
        lambda primals, sizes, g, size: magnitudes.evaluate_with_overflow(
            lambda p, u: _reference_output_and_cotangents(rule, p, u), [primals, g], [sizes, size]
        )
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def autodiff_pullback(rule: Rule) -> Callable:
    """Jitted: (primals, g) -> jax.vjp of the reference, to measure JAX's own error."""
    return jax.jit(lambda primals, g: _reference_cotangents(rule, primals, g))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def truth_forward(rule: Rule) -> Callable:
    """Jitted: (primals, sizes) -> the reference's output, its error magnitude, and
    whether an operation overflowed on the way."""
    return jax.jit(
        lambda primals, sizes: magnitudes.evaluate_with_overflow(lambda p: rule.reference(*p), [primals], [sizes])
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def autodiff_forward(rule: Rule) -> Callable:
    return jax.jit(lambda primals: rule.reference(*primals))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def adjoint_kernel(rule: Rule) -> Callable:
    """Jitted, in float64: both oracles' sides of the adjoint identity."""
    reference = rule.reference
    function = reference if reference is not None else rule.call_primal
    argnums = rule.float_inputs

    def run(primals, tangents, cotangent, step):
        steps = step * jnp.asarray(num.FD_SHRINKS, cotangent.dtype)
        result = {
            "fd": num.directional_differences(function, primals, tangents, argnums, cotangent, steps),
            "rounding": num.difference_rounding(function, primals, tangents, argnums, cotangent, step),
        }
        if reference is not None:
            inputs = tuple(primals[i] for i in argnums)
            _, derivative = jax.jvp(restrict(reference, primals, argnums), inputs, tuple(tangents))
            result["jvp"] = num.vdot(cotangent, derivative)
        return result

    return jax.jit(run)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def difference_gradient_kernel(rule: Rule) -> Callable:
    """Jitted, in float64: central differences of <U, f> along every element of every
    real input, at each step of `num.FD_SHRINKS`, and their rounding bound at the
    longest step. Returns (per real input, quotients of shape steps + input shape)."""
    function = rule.reference if rule.reference is not None else rule.call_primal
    argnums = rule.float_inputs

    def run(primals, cotangent, step):
        steps = step * jnp.asarray(num.FD_SHRINKS, cotangent.dtype)
        quotients = []
        for k, i in enumerate(argnums):
            shape = primals[i].shape
            basis = jnp.eye(max(primals[i].size, 1), dtype=cotangent.dtype)[: primals[i].size].reshape((-1, *shape))

            def along(direction, k=k):
                tangents = [jnp.zeros_like(primals[j]) for j in argnums]
                tangents[k] = direction
                return num.directional_differences(function, primals, tangents, argnums, cotangent, steps)

            per_element = jax.lax.map(along, basis)
            quotients.append(jnp.moveaxis(per_element, 1, 0).reshape((len(num.FD_SHRINKS), *shape)))
        ones = [jnp.ones_like(primals[i]) for i in argnums]
        rounding = num.difference_rounding(function, primals, ones, argnums, cotangent, step)
        return quotients, rounding

    return jax.jit(run)


def _flat_jacobian(reference: Callable, primals, index: int):
    """Return the explicit Jacobian (jax.jacfwd) of the row-major flattened output of
    ``reference`` with respect to its flattened input ``index``."""
    shape = primals[index].shape

    def flat_function(flat_input):
        full = list(primals)
        full[index] = flat_input.reshape(shape)
        return reference(*full).reshape(-1)

    return jax.jacfwd(flat_function)(primals[index].reshape(-1))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def flattening_kernel(rule: Rule, index: int) -> Callable:
    """Jitted, in float64: Phi^-1(J^T Phi(U)) for input ``index``."""
    reference = rule.reference

    def run(primals, cotangent):
        jacobian = _flat_jacobian(reference, primals, index)
        return (jacobian.T @ cotangent.reshape(-1)).reshape(primals[index].shape)

    return jax.jit(run)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def diagonal_kernel(rule: Rule, index: int) -> Callable:
    """Jitted, in float64: diag(J) * U for input ``index`` when it has the output's size,
    the cotangent a rule that keeps only the Jacobian's diagonal would return."""
    reference = rule.reference

    def run(primals, cotangent):
        jacobian = _flat_jacobian(reference, primals, index)
        return (jnp.diagonal(jacobian) * cotangent.reshape(-1)).reshape(primals[index].shape)

    return jax.jit(run)


# ----------------------------------------------------------------------------------
# Pullbacks of a rule or a chain, in the dtype under test and in float64


@dataclasses.dataclass
class LinkTrace:
    """One link of a chain in the rule's pass: its inputs, its incoming cotangent, and
    what its forward pass and backward rule returned."""

    position: int
    link: Rule
    arguments: list[Any]
    sizes: list[Any]
    cotangent: Any
    cotangent_size: Any
    output: Any
    output_size: Any
    obtained: list[Any]
    obtained_sizes: list[Any]


# In a KinkValue, marks a value whose elements must not tie.
TIES = "ties"


@dataclasses.dataclass
class KinkValue:
    """An intermediate value that a kinked link receives, as each computation saw it:
    the rules in the dtype, JAX's autodiff of the references, and the float64 truth."""

    values: tuple[Any, Any, Any]
    kinks: tuple[float, ...]


@dataclasses.dataclass
class Pullbacks:
    """Cotangents for a rule's real inputs, from the rule and from the oracles.

    Without a reference, only ``obtained`` and ``obtained_sizes`` are set.
    """

    obtained: list[Any]
    # Magnitudes of the terms behind each obtained cotangent.
    obtained_sizes: list[Any]
    # JAX's autodiff of the reference in `num.autodiff_dtype(dtype)`, to measure its error.
    autodiff: list[Any] | None = None
    expected: list[Any] | None = None
    expected_sizes: list[Any] | None = None
    # Intermediate values that must stay off kinks.
    kinks: list[KinkValue] = dataclasses.field(default_factory=list)
    # The op's output in the dtype under test.
    output: Any = None
    # Whether an operation in the float64 truth overflowed, which makes it untrustworthy.
    truth_overflowed: bool = False
    # The op's output and its error magnitude as the rule computes it, and the
    # reference's output in float64 with its magnitude.
    output_size: Any = None
    truth_output: Any = None
    truth_output_size: Any = None
    # For a chain: what each link received and returned in the rule's pass, to find the
    # link that disagrees with its reference when the chain does.
    links: list[LinkTrace] = dataclasses.field(default_factory=list)

    def scales(self) -> list[np.ndarray]:
        """Return, per element, the larger magnitude of the two computations plus |expected|.

        The rule's magnitude counts only where it is finite: a rule that overflows must
        not widen its own tolerance to infinity.
        """
        scales = []
        for rule_size, truth_size, expected in zip(self.obtained_sizes, self.expected_sizes, self.expected):
            rule_size = np.asarray(rule_size, np.float64)
            rule_size = np.where(np.isfinite(rule_size), rule_size, 0.0)
            scales.append(np.maximum(rule_size, np.asarray(truth_size, np.float64)) + np.abs(np.asarray(expected, np.float64)))
        return scales


def pullbacks(rule: Rule, dtype: np.dtype, primals: Sequence[np.ndarray], cotangent: np.ndarray) -> Pullbacks:
    """Evaluate the rule's cotangents and, when it has a reference, the oracles'."""
    if isinstance(rule, Chain):
        return _chain_pullbacks(rule, dtype, primals, cotangent)
    has_reference = rule.reference is not None
    autodiff_dtype = num.autodiff_dtype(dtype)
    fused = has_reference and dtype == autodiff_dtype
    low = _cast(primals, cotangent, dtype)
    with num.x64_mode(dtype):
        (output, output_size), obtained, obtained_sizes, autodiff = rule_pullback(rule, fused)(
            low[0], tuple(map(exact_size, low[0])), low[1], exact_size(low[1]), *(low if fused else (None, None))
        )
    result = Pullbacks(obtained, obtained_sizes, autodiff, output=output, output_size=output_size)
    if has_reference and not fused:
        with num.x64_mode(autodiff_dtype):
            result.autodiff = autodiff_pullback(rule)(*_cast(primals, cotangent, autodiff_dtype))
    if has_reference:
        high = _cast(primals, cotangent, np.float64)
        with num.truth_mode():
            (truth_output, result.expected), (truth_output_size, result.expected_sizes), overflowed = truth_pullback(rule)(
                high[0], tuple(map(exact_size, high[0])), high[1], exact_size(high[1])
            )
        result.truth_output, result.truth_output_size = truth_output, truth_output_size
        result.truth_overflowed = bool(overflowed)
        result.expected_sizes = _add_sensitivity(rule, dtype, high, result)
    return result


def _add_sensitivity(rule: Rule, dtype: np.dtype, high, result: Pullbacks) -> list[Any]:
    """Add to the truth's magnitudes how far it moves when its inputs move by eps.

    A backward-stable computation in ``dtype`` returns the exact result for inputs
    perturbed by about eps of the dtype, normwise, so its error is about the truth's
    change under such a perturbation. That change grows with the condition number,
    which the running magnitudes miss (a solve with a nearly singular matrix, say).
    Each input moves by `SENSITIVITY_EPS` eps times its largest element, in fixed
    pseudo-random directions, zeros included, as a factorization's rounding does.
    """
    eps = float(jnp.finfo(dtype).eps)
    delta = SENSITIVITY_EPS * eps
    moved = []
    for value in high[0]:
        array = np.asarray(value)
        if num.is_float(array.dtype):
            signs = np.random.default_rng(array.size).choice([-1.0, 1.0], size=array.shape)
            array = array + delta * float(np.max(np.abs(array), initial=0.0)) * signs
        moved.append(array)
    with num.truth_mode():
        (_, shifted), _, overflowed = truth_pullback(rule)(tuple(moved), tuple(map(exact_size, moved)), high[1], exact_size(high[1]))
    if bool(overflowed):
        return result.expected_sizes
    # A truth that is infinite gives inf - inf = NaN here, and `steps.pullbacks`
    # discards that example because its expected cotangent is not finite.
    with np.errstate(invalid="ignore"):
        return [
            np.asarray(size, np.float64) + np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / delta
            for size, a, b in zip(result.expected_sizes, shifted, result.expected)
        ]


# Relative size, in epsilons of the dtype under test, of the input perturbation that
# measures the truth's sensitivity.
SENSITIVITY_EPS = 4.0


def exact_size(value: Any) -> Any:
    """Return the error magnitude of an exact input: zeros, or None for an integer array.

    Passing zeros rather than None keeps each kernel's argument structure the same for
    exact and computed inputs, so that JAX compiles it once.
    """
    array = np.asarray(value)
    return np.zeros_like(array) if num.is_float(array.dtype) else None


def _cast(primals, cotangent, dtype) -> tuple[tuple, np.ndarray]:
    with num.x64_mode(dtype):
        return num.cast_floats(primals, dtype), np.asarray(cotangent).astype(dtype)


@dataclasses.dataclass
class _Track:
    """One pass through a chain: its arguments per link, and their error magnitudes."""

    arguments: list[list[Any]]
    sizes: list[list[Any]]
    # The last link's output.
    output: Any = None
    # Whether an operation overflowed, in a track that records it.
    overflowed: bool = False


def _chain_pullbacks(chain: Chain, dtype: np.dtype, primals, cotangent) -> Pullbacks:
    # Three passes, each link feeding the next: the rules in the dtype under test, the
    # references in the autodiff dtype (for JAX's own error) and the references in
    # float64 (the truth).
    autodiff_dtype = num.autodiff_dtype(dtype)
    fused = dtype == autodiff_dtype
    rule_track, autodiff_track = _chain_forward_low(chain, primals, dtype, fused)
    truth_track = _chain_forward_truth(chain, primals)
    kinks = [
        KinkValue(
            values=(
                rule_track.arguments[k][link.data_index],
                autodiff_track.arguments[k][link.data_index],
                truth_track.arguments[k][link.data_index],
            ),
            kinks=link.kinks[link.data_index],
        )
        for k, link in enumerate(chain.links)
        if k > 0 and link.data_index in link.kinks
    ] + [
        KinkValue(
            values=tuple(track.arguments[k][link.data_index] for track in (rule_track, autodiff_track, truth_track)),
            kinks=(TIES,),
        )
        for k, link in enumerate(chain.links)
        if k > 0 and link.data_index in link.ties
    ]

    g_rule, g_autodiff, g_truth = (
        np.asarray(cotangent).astype(dtype), np.asarray(cotangent).astype(autodiff_dtype), np.asarray(cotangent, np.float64)
    )
    size_rule, size_truth = exact_size(g_rule), exact_size(g_truth)
    traces: list[LinkTrace] = []
    per_link: list[dict[int, tuple]] = [{} for _ in chain.links]
    for k in reversed(range(len(chain.links))):
        link = chain.links[k]
        rule_args, rule_sizes = tuple(rule_track.arguments[k]), tuple(rule_track.sizes[k])
        autodiff_args = tuple(autodiff_track.arguments[k])
        with num.x64_mode(dtype):
            (link_output, link_output_size), obtained, obtained_sizes, autodiff = rule_pullback(link, fused)(
                rule_args, rule_sizes, g_rule, size_rule, *((autodiff_args, g_autodiff) if fused else (None, None))
            )
        traces.append(LinkTrace(
            k, link, list(rule_args), list(rule_sizes), g_rule, size_rule,
            link_output, link_output_size, list(obtained), list(obtained_sizes),
        ))
        if not fused:
            with num.x64_mode(autodiff_dtype):
                autodiff = autodiff_pullback(link)(autodiff_args, g_autodiff)
        with num.truth_mode():
            (_, expected), (_, expected_sizes), overflowed = truth_pullback(link)(
                tuple(truth_track.arguments[k]), tuple(truth_track.sizes[k]), g_truth, size_truth
            )
        truth_track.overflowed = truth_track.overflowed or bool(overflowed)
        columns = (obtained, obtained_sizes, autodiff, expected, expected_sizes)
        for position, i in enumerate(link.float_inputs):
            per_link[k][i] = tuple(column[position] for column in columns)
        g_rule, size_rule, g_autodiff, g_truth, size_truth = per_link[k][link.data_index]

    columns: list[list[Any]] = [[] for _ in range(5)]
    for j in chain.float_inputs:
        k, i = chain.sources[j]
        for column, value in zip(columns, per_link[k][i]):
            column.append(value)
    return Pullbacks(
        *columns, kinks=kinks, output=rule_track.output, truth_overflowed=truth_track.overflowed,
        links=traces[::-1],
    )


def _chain_forward_low(chain: Chain, primals, dtype, fused) -> tuple[_Track, _Track]:
    """Run the rules forward in ``dtype`` and the references in the autodiff dtype."""
    autodiff_dtype = num.autodiff_dtype(dtype)
    with num.x64_mode(dtype):
        rule_primals = num.cast_floats(primals, dtype)
    with num.x64_mode(autodiff_dtype):
        autodiff_primals = num.cast_floats(primals, autodiff_dtype)
    rule_track, autodiff_track = _Track([], []), _Track([], [])
    value, size, autodiff_value = rule_primals[0], exact_size(rule_primals[0]), autodiff_primals[0]
    links = zip(chain.links, chain.link_arguments(rule_primals), chain.link_arguments(autodiff_primals))
    for link, args, autodiff_args in links:
        args[link.data_index] = value
        autodiff_args[link.data_index] = autodiff_value
        arg_sizes = [size if i == link.data_index else exact_size(a) for i, a in enumerate(args)]
        rule_track.arguments.append(args)
        rule_track.sizes.append(arg_sizes)
        autodiff_track.arguments.append(autodiff_args)
        with num.x64_mode(dtype):
            value, size, reference_out = rule_forward(link, fused)(
                tuple(args), tuple(arg_sizes), tuple(autodiff_args) if fused else None
            )
        if fused:
            autodiff_value = reference_out
        else:
            with num.x64_mode(autodiff_dtype):
                autodiff_value = autodiff_forward(link)(tuple(autodiff_args))
    rule_track.output, autodiff_track.output = value, autodiff_value
    return rule_track, autodiff_track


def _chain_forward_truth(chain: Chain, primals) -> _Track:
    """Run the references forward in float64, tracking their error magnitudes."""
    track = _Track([], [])
    with num.truth_mode():
        primals = num.cast_floats(primals, np.float64)
        value, size = primals[0], exact_size(primals[0])
        for link, args in zip(chain.links, chain.link_arguments(primals)):
            args[link.data_index] = value
            arg_sizes = [size if i == link.data_index else exact_size(a) for i, a in enumerate(args)]
            track.arguments.append(args)
            track.sizes.append(arg_sizes)
            value, size, overflowed = truth_forward(link)(tuple(args), tuple(arg_sizes))
            track.overflowed = track.overflowed or bool(overflowed)
    return track


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

    # A tree rule's cotangents are judged as the rule returns them, before flattening.
    raw_vjp = rule.raw_tree_vjp if isinstance(rule, TreeRule) else rule.raw_vjp

    def run(p, g):
        out, backward = raw_vjp(*p)
        return out, backward(g)

    with num.x64_mode(dtype):
        # The forward pass alone first: a signature that misstates the output shape
        # makes the backward rule fail with a shape error of JAX's that hides the cause.
        out = jax.eval_shape(lambda p: raw_vjp(*p)[0], tuple(primals))
        if not hasattr(out, "shape"):
            raise InvalidSpec(
                f"rule {rule.name!r}: the op returned {describe(out)}, but vjpcheck checks "
                "ops that return a single array. Return one array, for example by joining "
                "the results with jnp.concatenate or jnp.stack, or declare one rule per output."
            )
        if tuple(out.shape) != tuple(output_shape):
            raise InvalidSpec(
                f"rule {rule.name!r}: the op returned {short_array(out)} but signature "
                f"{rule.signature.text!r} gives the output shape {tuple(output_shape)} for "
                "these inputs; correct the signature's output or the op."
            )
        try:
            _, returned = jax.eval_shape(run, tuple(primals), cotangent)
        except TypeError as error:
            if "not a valid JAX type" not in str(error):
                raise
            return [f"the backward rule returned a value that is not an array: {error}"]
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
    if isinstance(rule, TreeRule):
        return _tree_returned_problems(rule, primals, returned)
    problems = tuple_problems(returned, rule.arg_names)
    if problems:
        return problems
    for i, (spec, cotangent) in enumerate(zip(rule.specs, returned)):
        if cotangent is None:
            continue
        problem = _leaf_problem(f"cotangent for {rule.input_label(i)}", spec, primals[i], cotangent)
        if problem:
            problems.append(problem)
    return problems


def _tree_returned_problems(rule: TreeRule, primals: Sequence[Any], returned: Any) -> list[str]:
    problems = tuple_problems(returned, rule.tree_names)
    if problems:
        return problems
    trees = rule.tree_signature.unflatten(primals)
    first = 0
    for i, (name, tree, cotangent) in enumerate(zip(rule.tree_names, trees, returned)):
        count = len(rule.tree_signature.paths[i])
        check_leaf = functools.partial(_tree_leaf_problem, rule.specs[first:first + count])
        problems += match_cotangent(tree, cotangent, name, i, check_leaf)[1]
        first += count
    return problems


def _tree_leaf_problem(specs: Sequence[Any], label: str, position: int, primal: Any, cotangent: Any) -> str | None:
    return _leaf_problem(label, specs[position], primal, cotangent)


def _leaf_problem(label: str, spec: Any, primal: Any, cotangent: Any) -> str | None:
    """Say what is wrong with the cotangent for one array input, or return None."""
    if not hasattr(cotangent, "shape"):
        return f"{label} is a {type(cotangent).__name__}; expected an array."
    if spec.kind == "index":
        if np.dtype(cotangent.dtype) != jax.dtypes.float0 or cotangent.shape != np.shape(primal):
            return (
                f"{label} is {short_array(cotangent)}; an integer input takes None or a "
                f"float0 array of shape {np.shape(primal)}."
            )
        return None
    if cotangent.shape != np.shape(primal) or np.dtype(cotangent.dtype) != np.asarray(primal).dtype:
        problem = (
            f"{label} is {short_array(cotangent)}; expected {short_array(primal)}, "
            "the shape and dtype of the input."
        )
        hint = shape_hint(tuple(cotangent.shape), tuple(np.shape(primal)))
        return f"{problem} {hint}" if hint else problem
    return None
