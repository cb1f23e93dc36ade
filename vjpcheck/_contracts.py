"""Properties of the backward rule as a function: linearity, transforms, determinism and
second derivatives. They need no oracle but the rule itself, except `second_order`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from vjpcheck import _judging as judging
from vjpcheck import _kernels as kernels
from vjpcheck import _magnitudes as magnitudes
from vjpcheck import _numerics as num
from vjpcheck import _steps as steps
from vjpcheck._chains import Chain
from vjpcheck._context import Context
from vjpcheck._report import mismatch_details
from vjpcheck._rules import Rule
from vjpcheck._strategies import draw_cotangent

_COEFFICIENTS = st.floats(-4.0, 4.0, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)
# Extra examples that `transforms` stacks under jax.vmap.
_BATCH = st.integers(1, 2)


def _low(ctx: Context, primals: Sequence[Any]) -> tuple:
    with num.x64_mode(ctx.dtype):
        return num.cast_floats(primals, ctx.dtype)


def _pull(ctx: Context, rule: Rule, primals: Sequence[Any], cotangent: np.ndarray, inexact_cotangent: bool = False):
    """Run the rule's jitted pullback in the dtype; return (cotangents, magnitudes).

    An example where the op's output is not finite is discarded: the derivative is
    undefined there, as in the other properties.
    """
    low = _low(ctx, primals)
    u = np.asarray(cotangent).astype(ctx.dtype)
    size = np.abs(u) if inexact_cotangent else kernels.exact_size(u)
    with num.x64_mode(ctx.dtype):
        (out, _), obtained, sizes, _ = kernels.rule_pullback(rule, False)(
            low, tuple(map(kernels.exact_size, low)), u, size, None, None
        )
    if not judging.is_finite(jax.tree_util.tree_leaves(out)):
        ctx.stats.discard(f"op output not finite in {ctx.dtype.name}")
    return [np.asarray(o, np.float64) for o in obtained], [np.asarray(s, np.float64) for s in sizes]


def _compare(ctx: Context, rule: Rule, labels: Sequence[str], obtained, expected, scales) -> tuple[list[str], float]:
    """Compare arrays with the floor tolerance of the dtype; return failures and the worst ratio.

    An example where the rule's results overflow is discarded: whether they are right
    is for ``matches_autodiff`` and ``stability`` to judge, not these contracts. So is
    one where the rule's rounding-error bound is not finite (an intermediate value
    overflowed, or inf met 0): no tolerance can be derived there.
    """
    if not (judging.is_finite(obtained) and judging.is_finite(expected)):
        ctx.stats.discard("rule's cotangent not finite")
    if not judging.is_finite(scales):
        ctx.stats.discard("rule's intermediate values overflowed")
    failures, worst = [], 0.0
    tolerance = judging.tolerance(ctx, None)
    for label, got, want, scale in zip(labels, obtained, expected, scales):
        comparison = num.compare(got, want, tolerance.bound(scale))
        worst = max(worst, comparison.worst_ratio)
        if comparison.count:
            failures.append(mismatch_details(label, comparison, tolerance))
    return failures, worst


def _labels(rule: Rule, what: str) -> list[str]:
    return [f"{what} for {rule.input_label(i)}" for i in rule.float_inputs]


# ----------------------------------------------------------------------------------
# linearity


def linearity(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule)
    u = draw_cotangent(data, example.output_shape, ctx.dtype, label="cotangent U")
    v = draw_cotangent(data, example.output_shape, ctx.dtype, label="cotangent V")
    a = data.draw(_COEFFICIENTS, label="a")
    b = data.draw(_COEFFICIENTS, label="b")
    header = steps.heading(ctx, rule, ctx.prop, example)
    steps.require_structure(ctx, rule, example, u, header)

    combined = (a * np.asarray(u, np.float64) + b * np.asarray(v, np.float64)).astype(ctx.dtype)
    g_u, m_u = _pull(ctx, rule, example.primals, u)
    g_v, m_v = _pull(ctx, rule, example.primals, v)
    g_c, m_c = _pull(ctx, rule, example.primals, combined, inexact_cotangent=True)
    zero = np.zeros_like(np.asarray(u))
    g_0, m_0 = _pull(ctx, rule, example.primals, zero)

    expected = [a * gu + b * gv for gu, gv in zip(g_u, g_v)]
    with np.errstate(invalid="ignore"):  # inf * 0 in a bound gives NaN, which _compare discards
        scales = [mc + abs(a) * mu + abs(b) * mv + np.abs(e) for mc, mu, mv, e in zip(m_c, m_u, m_v, expected)]
    failures, worst = _compare(ctx, rule, _labels(rule, "bwd(a U + b V) against a bwd(U) + b bwd(V), cotangent"), g_c, expected, scales)
    zero_failures, _ = _compare(ctx, rule, _labels(rule, "bwd(0), cotangent"), g_0, [np.zeros_like(g) for g in g_0], m_0)
    steps.settle(ctx, header, failures + zero_failures, worst, ambiguous=False)


# ----------------------------------------------------------------------------------
# determinism


def determinism(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule)
    u = draw_cotangent(data, example.output_shape, ctx.dtype)
    # A second input of the same shapes, whose forward pass runs between the calls of
    # bwd: a rule that passes values from fwd to bwd outside its residuals (a global
    # that fwd writes and bwd reads) then back-propagates the wrong input.
    other = steps.draw_example(ctx, data, rule, sizes=example.sizes, suffix=" for a second forward pass")
    header = steps.heading(ctx, rule, ctx.prop, example)
    steps.require_structure(ctx, rule, example, u, header)

    low, other_low = _low(ctx, example.primals), _low(ctx, other.primals)
    g = np.asarray(u).astype(ctx.dtype)
    # NumPy's floating-point warnings are off because the eager op computes with NumPy
    # inputs, and an output that is not finite is compared like any other (see _same).
    with num.x64_mode(ctx.dtype), np.errstate(all="ignore"):
        # Eagerly, so that Python-side state (a counter, a random draw) shows.
        _, backward = rule.raw_vjp(*low)
        first = _floats(rule, backward(g), low)
        second = _floats(rule, backward(g), low)
        rule.raw_vjp(*other_low)
        third = _floats(rule, backward(g), low)

    failures = _differences(rule, "Two calls of bwd on the same residuals, cotangent", first, second)
    if not failures:
        failures = _differences(
            rule, "bwd on the same residuals before and after a forward pass on other inputs, cotangent",
            first, third,
        )
        if failures:
            failures.append(
                "The rule's backward pass depends on the latest forward pass, not on its own "
                "residuals: pass every value bwd needs from fwd in the residuals, not through "
                "a global or an attribute."
            )
    steps.settle(ctx, header, failures, 0.0, ambiguous=False)


def _differences(rule: Rule, comparison: str, first: list[np.ndarray], second: list[np.ndarray]) -> list[str]:
    return [
        f"{label}: the two calls differ in {int(np.sum(~_same(x, y)))} of {x.size} elements; "
        f"first {_first_difference(x, y)}."
        for label, x, y in zip(_labels(rule, comparison), first, second)
        if not np.all(_same(x, y))
    ]


def _floats(rule: Rule, returned: Sequence[Any], primals: Sequence[Any]) -> list[np.ndarray]:
    return [
        np.zeros(np.shape(primals[i])) if returned[i] is None else np.asarray(returned[i], np.float64)
        for i in rule.float_inputs
    ]


def _same(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x == y) | (np.isnan(x) & np.isnan(y))


def _first_difference(x: np.ndarray, y: np.ndarray) -> str:
    index = tuple(int(i) for i in np.argwhere(~_same(x, y))[0])
    return f"at index {index}: {float(x[index])!r} then {float(y[index])!r}"


# ----------------------------------------------------------------------------------
# transforms


def transforms(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule)
    u = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = steps.heading(ctx, rule, ctx.prop, example)
    steps.require_structure(ctx, rule, example, u, header)
    extra = data.draw(_BATCH, label="examples added for jax.vmap")
    batch = [(example.primals, u)]
    for k in range(extra):
        more = steps.draw_example(ctx, data, rule, sizes=example.sizes, suffix=f" [vmap {k + 1}]")
        batch.append((more.primals, draw_cotangent(data, example.output_shape, ctx.dtype, label=f"cotangent [vmap {k + 1}]")))

    jitted = [_pull(ctx, rule, primals, cotangent) for primals, cotangent in batch]
    low = _low(ctx, example.primals)
    with num.x64_mode(ctx.dtype):
        _, backward = rule.raw_vjp(*low)
        eager = _floats(rule, backward(np.asarray(u).astype(ctx.dtype)), low)
        mapped = _vmapped(ctx, rule, batch)

    g_jit, m_jit = jitted[0]
    failures, worst = _compare(ctx, rule, _labels(rule, "Eagerly against under jax.jit, cotangent"), eager, g_jit, _scales(m_jit, g_jit))
    for k, (g, m) in enumerate(jitted):
        more, ratio = _compare(
            ctx, rule, _labels(rule, f"Under jax.vmap (batch element {k}) against alone, cotangent"),
            [column[k] for column in mapped], g, _scales(m, g),
        )
        failures += more
        worst = max(worst, ratio)
    steps.settle(ctx, header, failures, worst, ambiguous=False)


def _scales(sizes: Sequence[np.ndarray], values: Sequence[np.ndarray]) -> list[np.ndarray]:
    # An infinite bound stays infinite, so that _compare discards the example: its
    # error is unknown, not zero.
    return [s + np.abs(v) for s, v in zip(sizes, values)]


def _vmapped(ctx: Context, rule: Rule, batch) -> list[np.ndarray]:
    """Run the rule's backward pass under jax.vmap over the stacked examples."""
    stacked = tuple(
        np.stack([np.asarray(_low(ctx, primals)[i]) for primals, _ in batch])
        for i in range(len(rule.arg_names))
    )
    cotangents = np.stack([np.asarray(u).astype(ctx.dtype) for _, u in batch])
    return [np.asarray(c, np.float64) for c in _batched_pullback(rule)(stacked, cotangents)]


@functools.lru_cache(maxsize=1024)
def _batched_pullback(rule: Rule) -> Callable:
    def one(primals, cotangent):
        _, backward = rule.raw_vjp(*primals)
        return kernels.float_cotangents(rule, backward(cotangent), primals)

    return jax.jit(jax.vmap(one))


# ----------------------------------------------------------------------------------
# second_order


def second_order(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule)
    u = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = steps.heading(ctx, rule, ctx.prop, example)
    steps.require_structure(ctx, rule, example, u, header)
    w = tuple(
        draw_cotangent(data, np.shape(example.primals[i]), ctx.dtype, label=f"second-order cotangent for {rule.arg_names[i]}")
        for i in rule.float_inputs
    )

    low = _low(ctx, example.primals)
    with num.x64_mode(ctx.dtype):
        obtained, obtained_sizes = _second_order_kernel(rule, "rule")(
            low, np.asarray(u).astype(ctx.dtype), tuple(np.asarray(x).astype(ctx.dtype) for x in w)
        )
    with num.truth_mode():
        high = num.cast_floats(example.primals, np.float64)
        expected, expected_sizes = _second_order_kernel(rule, "reference")(
            high, np.asarray(u, np.float64), tuple(np.asarray(x, np.float64) for x in w)
        )
    if not judging.is_finite(expected):
        ctx.stats.discard("reference second derivatives not finite")
    # Inside a chain, a kink that an intermediate value reaches makes the derivatives
    # there a choice; find out the way matches_autodiff does.
    ambiguous = isinstance(rule, Chain) and judging.at_kink(steps.pullbacks(ctx, rule, example, u))
    labels = _labels(rule, "Second-order cotangent") + ["Second-order cotangent for the output cotangent"]
    scales = [
        np.maximum(np.where(np.isfinite(np.asarray(a, np.float64)), np.asarray(a, np.float64), 0.0), np.asarray(b, np.float64))
        + np.abs(np.asarray(e, np.float64))
        for a, b, e in zip(obtained_sizes, expected_sizes, expected)
    ]
    failures, worst = _compare(ctx, rule, labels, [np.asarray(o, np.float64) for o in obtained], [np.asarray(e, np.float64) for e in expected], scales)
    steps.settle(ctx, header, failures, worst, ambiguous=ambiguous)


@functools.lru_cache(maxsize=1024)
def _second_order_kernel(rule: Rule, side: str) -> Callable:
    """Jitted: the VJP, for cotangents W, of the map (real primals, g) -> cotangents,
    with the rule's backward pass (side "rule") or JAX's of the reference."""
    argnums = rule.float_inputs

    def backward(primals, g):
        if side == "rule":
            _, pullback = rule.raw_vjp(*primals)
            return kernels.float_cotangents(rule, pullback(g), primals)
        _, pullback = jax.vjp(rule.reference, *primals)
        pulled = pullback(g)
        return [pulled[i] for i in argnums]

    def second(primals, g, w):
        def of_floats(floats, g):
            full = list(primals)
            for i, value in zip(argnums, floats):
                full[i] = value
            return backward(tuple(full), g)

        floats = tuple(primals[i] for i in argnums)
        _, pullback = jax.vjp(of_floats, floats, g)
        d_floats, d_g = pullback(list(w))
        return [*d_floats, d_g]

    return jax.jit(lambda primals, g, w: magnitudes.evaluate(second, [primals, g, w], [None, None, None]))
