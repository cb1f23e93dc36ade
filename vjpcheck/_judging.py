"""Judging a rule's results against the oracles' under the error model.

The functions here compare and describe; the properties decide what to draw, and
whether a mismatch fails the rule or discards the example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vjpcheck import _kernels as kernels
from vjpcheck import _numerics as num
from vjpcheck._context import Context
from vjpcheck._report import mismatch_details
from vjpcheck._rules import Rule


def at_kink(pulled: kernels.Pullbacks) -> bool:
    """Return whether an intermediate value reached a kink of a later link.

    The rule, JAX's autodiff and the truth each compute the value that a kinked link
    receives in their own precision. Where one of them lands on a kink, or they land on
    different sides of it, their derivatives may differ and none of them is wrong.
    """
    for point in pulled.kinks:
        values = [np.asarray(v, np.float64) for v in point.values]
        if point.kinks == (kernels.TIES,):
            if _ties_differ(values):
                return True
            continue
        for kink in point.kinks:
            sides = [np.sign(v - kink) for v in values]
            on_kink = np.any([side == 0 for side in sides], axis=0)
            split = (sides[0] != sides[1]) | (sides[0] != sides[2])
            if np.any(on_kink | split):
                return True
    return False


def _ties_differ(values: Sequence[np.ndarray]) -> bool:
    """Return whether any track has two equal elements, or the tracks order them differently."""
    orders = []
    for value in values:
        flat = value.ravel()
        if np.any(np.diff(np.sort(flat)) == 0):
            return True
        orders.append(np.argsort(flat, kind="stable"))
    return any(not np.array_equal(orders[0], order) for order in orders[1:])


def tolerance(ctx: Context, autodiff_error: float | None) -> num.Tolerance:
    """Return the tolerance for ``ctx``: the call's override, the rule's, or the default."""
    if ctx.rtol is not None or ctx.atol is not None:
        rtol, atol, origin = ctx.rtol, ctx.atol, "set by check(rtol=..., atol=...)"
    else:
        rtol, atol, origin = ctx.rule.rtol, ctx.rule.atol, f"set on rule {ctx.rule.name!r}"
    return num.choose_tolerance(
        ctx.dtype, autodiff_error, measured_in=num.autodiff_dtype(ctx.dtype),
        rtol=rtol, atol=atol, override_origin=origin,
    )


def cotangent_failures(
    ctx: Context,
    rule: Rule,
    obtained: Sequence[Any],
    expected: Sequence[Any],
    scales: Sequence[np.ndarray],
    autodiff: Sequence[Any] | None,
    indices: Sequence[int],
    diagnose: Callable[[int, np.ndarray, np.ndarray], str] | None = None,
    slack: Sequence[np.ndarray] | None = None,
) -> tuple[list[str], float]:
    """Compare each input's cotangent elementwise; return the failure texts and the
    worst error-to-tolerance ratio. Without ``autodiff`` the tolerance is the floor.

    ``diagnose(i, obtained, expected)``, when given, names the likely mistake for a
    mismatching input i. ``slack``, when given, widens each input's bound elementwise,
    as the half-width of an interval of valid subgradients does.
    """
    failures, worst = [], 0.0
    for k, i in enumerate(indices):
        truth = np.asarray(expected[k], np.float64)
        scale = scales[k]
        autodiff_error = num.relative_error(autodiff[k], truth, scale) if autodiff is not None else None
        chosen = tolerance(ctx, autodiff_error)
        bound = chosen.bound(scale) + (np.asarray(slack[k], np.float64) if slack is not None else 0.0)
        comparison = num.compare(obtained[k], truth, bound)
        worst = max(worst, comparison.worst_ratio)
        if comparison.count:
            label = f"Cotangent for {rule.input_label(i)}"
            text = mismatch_details(label, comparison, chosen)
            if diagnose is not None:
                text += f"\nDiagnosis: {diagnose(i, comparison.obtained, truth)}"
            failures.append(text)
    return failures, worst


def output_failure(ctx: Context, pulled: kernels.Pullbacks) -> tuple[str | None, float]:
    """Compare the op's output, as the rule computes it, with the reference's output."""
    if pulled.truth_output is None or pulled.output is None:
        return None, 0.0
    return _output_failure(ctx, pulled.output, pulled.output_size, pulled.truth_output, pulled.truth_output_size, "Output of the op")


def _output_failure(ctx, output, output_size, truth, truth_size, label) -> tuple[str | None, float]:
    truth = np.asarray(truth, np.float64)
    rule_size = np.asarray(output_size, np.float64)
    rule_size = np.where(np.isfinite(rule_size), rule_size, 0.0)
    scale = np.maximum(rule_size, np.asarray(truth_size, np.float64)) + np.abs(truth)
    chosen = tolerance(ctx, None)
    comparison = num.compare(np.asarray(output, np.float64).reshape(truth.shape), truth, chosen.bound(scale))
    if not comparison.count:
        return None, comparison.worst_ratio
    text = mismatch_details(label, comparison, chosen)
    return (
        text + "\nThe op returns something other than its reference. If the forward pass "
        "(the op, @fwd, or a custom_vjp's fwd) is right, the reference is not the op's.",
        comparison.worst_ratio,
    )


KINK_STEP = 1e-9


def kink_sides(rule: Rule, primals: Sequence[Any]) -> tuple[tuple, tuple] | None:
    """Return float64 copies of the primals with elements that sit on a declared kink
    moved just below it and just above it, or None when no element sits on one.

    The truth on each side gives the one-sided derivatives, between which any
    subgradient is valid for an op that acts elementwise on the kinked input.
    """
    left, right, moved = list(primals), list(primals), False
    for i, points in rule.kinks.items():
        values = np.asarray(primals[i], np.float64)
        on = np.zeros(values.shape, bool)
        for point in points:
            on |= values == point
        if np.any(on):
            step = KINK_STEP * max(1.0, float(np.max(np.abs(values))))
            left[i], right[i], moved = np.where(on, values - step, values), np.where(on, values + step, values), True
    return (tuple(left), tuple(right)) if moved else None


def subgradient_interval(rule: Rule, primals: Sequence[Any], cotangent: np.ndarray, expected: Sequence[Any]):
    """Return (midpoints, half-widths) of the valid cotangents per real input, or None.

    The interval spans the truth at the kink and on both sides of it.
    """
    sides = kink_sides(rule, primals)
    if sides is None:
        return None
    candidates = [[np.asarray(e, np.float64) for e in expected]]
    u = np.asarray(cotangent, np.float64)
    for side in sides:
        with num.truth_mode():
            (_, pulled), _, _ = kernels.truth_pullback(rule)(
                side, tuple(kernels.exact_size(a) for a in side), u, kernels.exact_size(u)
            )
        candidates.append([np.asarray(p, np.float64) for p in pulled])
    low = [np.min(stack, axis=0) for stack in map(np.stack, zip(*candidates))]
    high = [np.max(stack, axis=0) for stack in map(np.stack, zip(*candidates))]
    return [(lo + hi) / 2 for lo, hi in zip(low, high)], [(hi - lo) / 2 for lo, hi in zip(low, high)]


def blame_links(ctx: Context, pulled: kernels.Pullbacks) -> list[tuple[kernels.LinkTrace, str]]:
    """Return the links of a chain that disagree with their own references at the
    inputs and cotangent they received in the rule's pass, with the reason.

    A chain's cotangents can differ from the composed reference's because any link is
    wrong; checking each link where it stood in the chain finds which.
    """
    blamed = []
    for trace in pulled.links:
        link = trace.link
        if _on_own_kink(trace):
            continue
        with num.truth_mode():
            high = num.cast_floats(trace.arguments, np.float64)
            g = np.asarray(trace.cotangent, np.float64)
            (truth_out, truth_cts), (truth_out_size, truth_sizes), overflowed = kernels.truth_pullback(link)(
                tuple(high), tuple(kernels.exact_size(a) for a in high), g, kernels.exact_size(g)
            )
        if bool(overflowed):
            continue
        label = f"link {trace.position} ({link.name}, {link.location})"
        text, _ = _output_failure(ctx, trace.output, trace.output_size, truth_out, truth_out_size, f"Output of {label}")
        if text:
            blamed.append((trace, text))
            continue
        scales = [
            np.maximum(np.where(np.isfinite(np.asarray(a, np.float64)), np.asarray(a, np.float64), 0.0), np.asarray(b, np.float64))
            + np.abs(np.asarray(t, np.float64))
            for a, b, t in zip(trace.obtained_sizes, truth_sizes, truth_cts)
        ]
        failures, _ = cotangent_failures(ctx, link, trace.obtained, truth_cts, scales, None, link.float_inputs)
        if failures:
            blamed.append((trace, f"At the inputs and cotangent that {label} received in the chain, its backward rule disagrees with its reference:\n" + "\n".join(failures)))
    return blamed


def _on_own_kink(trace: kernels.LinkTrace) -> bool:
    points = trace.link.kinks.get(trace.link.data_index, ())
    value = np.asarray(trace.arguments[trace.link.data_index], np.float64)
    if trace.link.data_index in trace.link.ties and np.any(np.diff(np.sort(value.ravel())) == 0):
        return True
    return any(bool(np.any(value == point)) for point in points)


def is_finite(values: Sequence[Any] | None) -> bool:
    # On the host, with NumPy: jnp here would compile a kernel per new shape.
    return all(bool(np.all(np.isfinite(np.asarray(v, np.float64)))) for v in (values or []) if v is not None)
