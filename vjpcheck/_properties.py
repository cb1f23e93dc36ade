"""One function per property. Each draws an example, computes, compares and reports.

Every value property runs the rule in the dtype under test in one jitted call and the
float64 truth in another, both cached per rule so that JAX compiles once per shape.
The rule runs with the user's own 64-bit setting (turned on only for float64), because
a rule that builds constants with ``jnp.ones`` gets float64 constants under 64-bit mode
and would then fail a check it passes in the user's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis.strategies import DataObject

from vjpcheck import _contracts as contracts
from vjpcheck import _judging as judging
from vjpcheck import _steps as steps
from vjpcheck import _kernels as kernels
from vjpcheck import _numerics as num
from vjpcheck._chains import Chain, chain_partners, describe_chain_search, draw_chain
from vjpcheck._context import Context
from vjpcheck._report import mismatch_details, scalar_details
from vjpcheck._rules import Rule
from vjpcheck._strategies import draw_cotangent, draw_tangents

# Largest explicit Jacobian (output size times input size) that `flattening` builds.
FLATTENING_LIMIT = 1 << 16
# A finite-difference estimate fails a rule only when its two steps agree with each
# other this many times better than with the rule, and within this fraction of the
# estimate itself.
FD_CONFIDENCE = 100.0
FD_AGREEMENT = 0.01
# The stability property draws real and positive inputs from ranges this many times
# wider than the specs', where a naive exp, log or division overflows.
STABILITY_WIDTH = 100.0


@dataclasses.dataclass(frozen=True)
class Property:
    name: str
    sentence: str
    run: Callable[[Context, DataObject], None]
    not_applicable: Callable[[Rule, Sequence[Rule]], str | None]
    # Properties that expect many discards let Hypothesis go on drawing.
    many_discards: bool = False
    # The sentence for a rule without a reference, where it differs.
    sentence_without_reference: str | None = None


# ----------------------------------------------------------------------------------
# Shared steps


# ----------------------------------------------------------------------------------
# The properties


def _structure(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    steps.require_structure(ctx, rule, example, cotangent, steps.heading(ctx, rule, STRUCTURE, example))
    ctx.stats.record(0.0)


def _matches_autodiff(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule, on_kinks=rule.subgradients)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    steps.compare_with_autodiff(ctx, rule, example, cotangent, MATCHES_AUTODIFF)


def _adjoint(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule, on_kinks=rule.subgradients)
    tangents = draw_tangents(data, rule, example, ctx.dtype)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = steps.heading(ctx, rule, ADJOINT, example)
    steps.require_structure(ctx, rule, example, cotangent, header)

    pulled = steps.pullbacks(ctx, rule, example, cotangent)
    ambiguous = judging.at_kink(pulled)
    with num.truth_mode():
        high = num.cast_floats(example.primals, np.float64)
    tangents = tuple(np.asarray(t, np.float64) for t in tangents)
    step = num.fd_step([high[i] for i in rule.float_inputs], tangents)
    with num.truth_mode():
        truth = kernels.adjoint_kernel(rule)(high, tangents, np.asarray(cotangent, np.float64), step)

    obtained = _pair(tangents, pulled.obtained)
    failures, ratios = [], [0.0]
    sides = judging.kink_sides(rule, high) if rule.subgradients else None
    slack = 0.0
    if rule.reference is not None:
        scale = sum(float(np.vdot(np.abs(t), s)) for t, s in zip(tangents, pulled.scales()))
        forward = float(truth["jvp"])
        if sides is not None:
            # Any value between the one-sided directional derivatives is valid.
            with num.truth_mode():
                values = [forward] + [
                    float(kernels.adjoint_kernel(rule)(side, tangents, np.asarray(cotangent, np.float64), step)["jvp"])
                    for side in sides
                ]
            forward, slack = (max(values) + min(values)) / 2, (max(values) - min(values)) / 2
        autodiff = _pair(tangents, pulled.autodiff)
        usable = scale > 0 and np.isfinite(autodiff) and not ambiguous
        autodiff_error = abs(autodiff - forward) / scale if usable and sides is None else None
        tolerance = judging.tolerance(ctx, autodiff_error)
        bound = float(tolerance.bound(np.float64(scale))) + slack
        ratios.append(_ratio(obtained, forward, bound))
        if not abs(obtained - forward) <= bound:
            failures.append(scalar_details(
                "Forward mode: sum_i <H_i, G_i> against <U, Df(X)[H]> from jax.jvp",
                obtained, forward, bound, tolerance,
            ))
    else:
        scale = sum(
            float(np.vdot(np.abs(t), np.asarray(s, np.float64)))
            for t, s in zip(tangents, pulled.obtained_sizes)
        )
        tolerance = judging.tolerance(ctx, None)
        bound = float(tolerance.bound(np.float64(scale)))

    # Central differences across a kink measure neither side, so they judge only
    # examples off the kinks.
    failure, ratio = (None, 0.0) if sides is not None else _judge_finite_differences(ctx, truth, obtained, scale, bound, step)
    ratios.append(ratio)
    if failure:
        if rule.reference is not None and not failures:
            failure += (
                "\nForward mode (jax.jvp of the reference) agrees with the rule here, so the "
                "op's finite differences and JAX's derivative of the reference differ: the op "
                "may use stop_gradient, or a custom derivative that is not its derivative."
            )
        failures.append(failure)
    if failures and len(rule.float_inputs) > 1:
        failures.append(_blame_inputs(ctx, rule, pulled, high, tangents, cotangent, step))
    steps.settle(ctx, header, failures, max(ratios), ambiguous, example)


def _blame_inputs(ctx, rule, pulled, high, tangents, cotangent, step) -> str:
    """Check the identity one input at a time, with the other tangents zero, and name
    the inputs for which it fails."""
    culprits = []
    for k, i in enumerate(rule.float_inputs):
        alone = tuple(t if j == k else np.zeros_like(t) for j, t in enumerate(tangents))
        with num.truth_mode():
            truth = kernels.adjoint_kernel(rule)(high, alone, np.asarray(cotangent, np.float64), step)
        obtained = _pair(alone, pulled.obtained)
        scales = pulled.scales() if rule.reference is not None else pulled.obtained_sizes
        scale = sum(float(np.vdot(np.abs(t), np.asarray(s, np.float64))) for t, s in zip(alone, scales))
        bound = float(judging.tolerance(ctx, None).bound(np.float64(scale)))
        if rule.reference is not None:
            target = float(truth["jvp"])
        else:
            quotients = np.asarray(truth["fd"], np.float64)
            target = float(quotients[-1])
            bound += float(np.max(np.abs(np.diff(quotients[-2:])))) + 4 * float(truth["rounding"]) / num.FD_SHRINKS[-1]
        if not abs(obtained - target) <= bound:
            culprits.append(repr(rule.arg_names[i]))
    if not culprits:
        return "Checked one input at a time, each is within tolerance; only their sum is not."
    return f"Checked one input at a time, the identity fails for {', '.join(culprits)}."


def _pair(tangents: Sequence[np.ndarray], cotangents: Sequence[Any]) -> float:
    """sum_i <H_i, G_i>, in float64."""
    return float(sum(np.vdot(t, np.asarray(g, np.float64)) for t, g in zip(tangents, cotangents)))


def _judge_finite_differences(ctx: Context, truth: dict, obtained: float, scale: float, bound: float, step: float) -> tuple[str | None, float]:
    """Compare sum_i <H_i, G_i> with central differences, whose own error widens the bound.

    Of the steps in `num.FD_SHRINKS`, the consecutive pair whose quotients disagree
    least, counting rounding, gives the estimate and its error. Unless that pair
    agrees with itself `FD_CONFIDENCE` times better than with the rule, the example is
    inconclusive: near a singularity, quotients can agree with each other and still
    be far from the derivative.
    """
    quotients = np.asarray(truth["fd"], np.float64)
    if not np.all(np.isfinite(quotients)):
        ctx.stats.discard("finite differences not finite")
    shrinks = np.asarray(num.FD_SHRINKS)
    rounding = float(truth["rounding"]) / shrinks[1:]
    disagreement = np.abs(np.diff(quotients))
    best = int(np.argmin(disagreement + 4 * rounding))
    fd, fd_error = float(quotients[best + 1]), float(disagreement[best] + 4 * rounding[best])
    fd_bound = bound + fd_error
    ratio = _ratio(obtained, fd, fd_bound)
    if abs(obtained - fd) <= fd_bound:
        return None, ratio
    if FD_CONFIDENCE * disagreement[best] >= abs(obtained - fd) or disagreement[best] > FD_AGREEMENT * abs(fd):
        ctx.stats.discard("finite differences inconclusive")
    tolerance = num.Tolerance(
        rtol=fd_bound / scale if scale > 0 else 0.0,
        atol=0.0,
        origin=(
            f"central differences with steps {step * shrinks[best]:.3g} and "
            f"{step * shrinks[best + 1]:.3g}, which differ by {disagreement[best]:.3g}"
        ),
    )
    text = scalar_details(
        "Finite differences: sum_i <H_i, G_i> against <U, (f(X + hH) - f(X - hH)) / 2h>",
        obtained, fd, fd_bound, tolerance,
    )
    return text, ratio


def _ratio(obtained: float, expected: float, bound: float) -> float:
    error = abs(obtained - expected)
    if not np.isfinite(error):
        return float("inf")
    if bound > 0:
        return error / bound
    if error == 0:
        return 0.0
    return float("inf")


# Largest real input, in elements, that `finite_differences` differentiates element by
# element: each element costs two evaluations per step.
DIFFERENCE_LIMIT = 256


def _finite_differences(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = steps.heading(ctx, rule, FINITE_DIFFERENCES, example)
    steps.require_structure(ctx, rule, example, cotangent, header)
    if sum(np.size(example.primals[i]) for i in rule.float_inputs) > DIFFERENCE_LIMIT:
        ctx.stats.discard("too many elements for elementwise finite differences")

    pulled = steps.pullbacks(ctx, rule, example, cotangent)
    ambiguous = judging.at_kink(pulled)
    with num.truth_mode():
        high = num.cast_floats(example.primals, np.float64)
        step = num.fd_step([high[i] for i in rule.float_inputs], [np.ones(1)])
        quotients, rounding = kernels.difference_gradient_kernel(rule)(high, np.asarray(cotangent, np.float64), step)
    if not judging.is_finite(quotients):
        ctx.stats.discard("finite differences not finite")

    shrinks = np.asarray(num.FD_SHRINKS)
    failures, worst, inconclusive = [], 0.0, False
    tolerance = judging.tolerance(ctx, None)
    sizes = pulled.scales() if rule.reference is not None else pulled.obtained_sizes
    for k, i in enumerate(rule.float_inputs):
        estimate, error, disagreement = _best_quotients(np.asarray(quotients[k], np.float64), float(rounding), shrinks)
        obtained = np.asarray(pulled.obtained[k], np.float64)
        scale = np.asarray(sizes[k], np.float64)
        scale = np.where(np.isfinite(scale), scale, 0.0) + np.abs(obtained)
        comparison = num.compare(obtained, estimate, tolerance.bound(scale) + error)
        worst = max(worst, comparison.worst_ratio)
        # Elements where the steps disagree with each other about as much as with the
        # rule cannot be judged; the others can.
        gap = np.abs(obtained - estimate)
        doubtful = (FD_CONFIDENCE * disagreement >= gap) | (disagreement > FD_AGREEMENT * np.abs(estimate))
        judged = comparison.mismatched & ~doubtful
        if np.any(judged):
            comparison.mismatched = judged
            label = f"Cotangent for {rule.input_label(i)} against central differences"
            failures.append(mismatch_details(label, comparison, tolerance))
        elif comparison.count:
            inconclusive = True
    if inconclusive and not failures:
        ctx.stats.discard("finite differences inconclusive")
    steps.settle(ctx, header, failures, worst, ambiguous, example)


def _best_quotients(quotients: np.ndarray, rounding: float, shrinks: np.ndarray):
    """Per element, the quotient of the consecutive pair of steps that agree best.

    Returns the estimate, its error bound (disagreement plus rounding) and the
    disagreement alone.
    """
    disagreement = np.abs(np.diff(quotients, axis=0))
    rounding_at = (4 * rounding / shrinks[1:]).reshape((-1,) + (1,) * (quotients.ndim - 1))
    best = np.argmin(disagreement + rounding_at, axis=0)
    pick = lambda stack: np.take_along_axis(stack, best[None], axis=0)[0]
    estimate = pick(quotients[1:])
    chosen = pick(disagreement)
    return estimate, chosen + pick(np.broadcast_to(rounding_at, disagreement.shape)), chosen


def _matrix_inputs(rule: Rule) -> list[int]:
    return [i for i in rule.float_inputs if len(rule.signature.inputs[i]) == 2]


def _flattening(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule, on_kinks=rule.subgradients)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = steps.heading(ctx, rule, FLATTENING, example)
    steps.require_structure(ctx, rule, example, cotangent, header)
    out_size = int(np.prod(example.output_shape))
    matrices = [i for i in _matrix_inputs(rule) if out_size * example.primals[i].size <= FLATTENING_LIMIT]
    if not matrices:
        ctx.stats.discard("Jacobian too large to build")

    pulled = steps.pullbacks(ctx, rule, example, cotangent)
    ambiguous = judging.at_kink(pulled)
    with num.truth_mode():
        high = num.cast_floats(example.primals, np.float64)
        expected = [
            kernels.flattening_kernel(rule, i)(high, np.asarray(cotangent, np.float64))
            for i in matrices
        ]
    positions = [rule.float_inputs.index(i) for i in matrices]
    scales = pulled.scales()
    autodiff = None if ambiguous else [pulled.autodiff[p] for p in positions]
    # The explicit Jacobian comes from forward mode, whose float64 rounding and
    # underflow the reverse-mode bounds in `scales` do not track (a product of two
    # tiny probabilities flushes to zero, say). Where it and jax.vjp of the reference
    # disagree, the truth is uncertain by at least their difference.
    truth_gap = [
        np.abs(np.asarray(e, np.float64) - np.asarray(pulled.expected[p], np.float64))
        for e, p in zip(expected, positions)
    ]
    slack = truth_gap
    sides = judging.kink_sides(rule, high) if rule.subgradients else None
    if sides is not None:
        # The explicit Jacobian on each side of the kink bounds the valid cotangents.
        with num.truth_mode():
            candidates = [expected] + [
                [kernels.flattening_kernel(rule, i)(side, np.asarray(cotangent, np.float64)) for i in matrices]
                for side in sides
            ]
        stacks = [np.stack([np.asarray(c[k], np.float64) for c in candidates]) for k in range(len(matrices))]
        expected = [(s.max(0) + s.min(0)) / 2 for s in stacks]
        slack = [gap + (s.max(0) - s.min(0)) / 2 for gap, s in zip(truth_gap, stacks)]
        autodiff = None
    failures, worst = judging.cotangent_failures(
        ctx, rule, [pulled.obtained[p] for p in positions], expected,
        [scales[p] for p in positions], autodiff, matrices,
        diagnose=steps.diagnoser(ctx, rule, example, cotangent, pulled),
        slack=slack,
    )
    steps.settle(ctx, header, failures, worst, ambiguous, example)


def _stability(ctx: Context, data: DataObject) -> None:
    rule = steps.bind(ctx, data, ctx.rule)
    example = steps.draw_example(ctx, data, rule, widen=STABILITY_WIDTH)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    steps.compare_with_autodiff(ctx, rule, example, cotangent, STABILITY, judge_overflow=True)


def _composition(ctx: Context, data: DataObject) -> None:
    chain = draw_chain(
        data, ctx.rule, _with_reference(ctx.pool), ctx.max_links, bind=lambda link: steps.bind(ctx, data, link)
    )
    example = steps.draw_example(ctx, data, chain)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    extra = f"Chain: {chain.name}"
    steps.compare_with_autodiff(ctx, chain, example, cotangent, COMPOSITION, extra)


# ----------------------------------------------------------------------------------
# Applicability


def _needs_reference(rule: Rule, pool: Sequence[Rule]) -> str | None:
    if rule.reference is None:
        return "the rule declares no reference (reference=None)"
    return None


def _needs_matrix(rule: Rule, pool: Sequence[Rule]) -> str | None:
    return _needs_reference(rule, pool) or (None if _matrix_inputs(rule) else "the rule has no matrix input")


def _needs_partner(rule: Rule, pool: Sequence[Rule]) -> str | None:
    reason = _needs_reference(rule, pool)
    if reason:
        return reason
    usable = _with_reference(pool)
    before, after = chain_partners(rule, usable)
    if before or after:
        return None
    return describe_chain_search(rule, usable)


def _with_reference(pool: Sequence[Rule]) -> list[Rule]:
    return [r for r in pool if r.reference is not None]


def _declares_second_order(rule: Rule, pool: Sequence[Rule]) -> str | None:
    if not getattr(rule, "second_order", False):
        return "the rule does not declare second_order=True"
    return _needs_reference(rule, pool)


def _always(rule: Rule, pool: Sequence[Rule]) -> str | None:
    return None


STRUCTURE = Property(
    "structure",
    "the backward rule returns a tuple with one cotangent per input, each with the "
    "input's shape and dtype (None or float0 for integer inputs).",
    _structure,
    _always,
)
MATCHES_AUTODIFF = Property(
    "matches_autodiff",
    "the op's output equals the reference's, and the cotangent for each input equals "
    "jax.vjp of the reference.",
    _matches_autodiff,
    _needs_reference,
)
ADJOINT = Property(
    "adjoint",
    "<U, Df(X)[H]> = sum_i <H_i, G_i> for drawn tangents H and cotangent U, with "
    "Df(X)[H] from jax.jvp of the reference and, independently, from central "
    "finite differences.",
    _adjoint,
    _always,
    sentence_without_reference=(
        "<U, Df(X)[H]> = sum_i <H_i, G_i> for drawn tangents H and cotangent U, with "
        "Df(X)[H] from central finite differences (the rule declares no reference)."
    ),
)
FLATTENING = Property(
    "flattening",
    "the cotangent for each matrix input equals Phi^-1(J^T Phi(U)), where Phi flattens "
    "row-major and J is the explicit Jacobian of the flattened function.",
    _flattening,
    _needs_matrix,
)
STABILITY = Property(
    "stability",
    f"for inputs drawn from ranges {STABILITY_WIDTH:g} times wider, wherever the op's "
    "output and the reference's cotangent are finite, the rule's cotangent is finite "
    "and equals jax.vjp of the reference.",
    _stability,
    _needs_reference,
    many_discards=True,
)
COMPOSITION = Property(
    "composition",
    "in a chain of rules, back-propagating through each rule's VJP in reverse order "
    "gives, for every input of every link, the cotangent jax.vjp gives for the composed "
    "references.",
    _composition,
    _needs_partner,
)

FINITE_DIFFERENCES = Property(
    "finite_differences",
    "each element of each cotangent equals the central difference of <U, f> along that "
    "element, evaluated in float64 at the pair of step sizes that agree best.",
    _finite_differences,
    _always,
    many_discards=True,
)
LINEARITY = Property(
    "linearity",
    "the backward rule is linear in the cotangent: bwd(a U + b V) = a bwd(U) + b bwd(V) "
    "for drawn U, V, a and b, and bwd(0) = 0.",
    contracts.linearity,
    _always,
)
TRANSFORMS = Property(
    "transforms",
    "the backward rule gives the same cotangents eagerly, under jax.jit, and under "
    "jax.vmap over a batch of examples.",
    contracts.transforms,
    _always,
)
DETERMINISM = Property(
    "determinism",
    "two calls of the backward rule on the same residuals give identical cotangents, "
    "also when a forward pass on other inputs runs between them.",
    contracts.determinism,
    _always,
)
SECOND_ORDER = Property(
    "second_order",
    "the backward rule is differentiable, and its VJP (the second-order VJP) equals "
    "that of jax.vjp of the reference.",
    contracts.second_order,
    _declares_second_order,
)

PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        STRUCTURE, MATCHES_AUTODIFF, ADJOINT, FLATTENING, STABILITY, COMPOSITION,
        FINITE_DIFFERENCES, LINEARITY, TRANSFORMS, DETERMINISM, SECOND_ORDER,
    )
}
