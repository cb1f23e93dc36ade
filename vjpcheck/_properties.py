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

from vjpcheck import _diagnosis as diagnosis
from vjpcheck import _judging as judging
from vjpcheck import _kernels as kernels
from vjpcheck import _numerics as num
from vjpcheck._chains import Chain, chain_partners, describe_chain_search, draw_chain
from vjpcheck._context import Context
from vjpcheck._errors import RuleMismatch
from vjpcheck._report import describe_inputs, failure_header, scalar_details
from vjpcheck._rules import Rule
from vjpcheck._strategies import Example, draw_cotangent, draw_example, draw_tangents

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


# ----------------------------------------------------------------------------------
# Shared steps


def _bind(ctx: Context, data: DataObject, rule: Rule) -> Rule:
    """Draw the rule's static arguments, if it has any, and return it bound to them."""
    if not rule.static_specs:
        return rule
    values = {
        rule.all_names[i]: data.draw(rule.static_specs[i].strategy, label=rule.all_names[i])
        for i in sorted(rule.static_specs)
    }
    return rule.bind(**values)


def _draw_example(ctx: Context, data: DataObject, rule: Rule, widen: float = 1.0) -> Example:
    example = draw_example(data, rule, ctx.dtype, ctx.shapes, on_give_up=ctx.stats.note_discard, widen=widen)
    ctx.stats.last_example = [
        f"{name} = {np.array2string(np.asarray(value), threshold=20)}"
        for name, value in zip(rule.arg_names, example.primals)
    ]
    return example


def _require_structure(ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, header: str) -> None:
    problems = kernels.structure_problems(rule, example.primals, cotangent, ctx.dtype, example.output_shape)
    if problems:
        raise RuleMismatch(header + "\n" + "\n".join(problems))


def _header(ctx: Context, rule: Rule, prop: Property, example: Example, extra: str = "") -> str:
    subject = ctx.rule
    inputs = describe_inputs(rule.arg_names, num.cast_floats(example.primals, ctx.dtype), example.output_shape, ctx.dtype)
    if rule.bound_statics:
        inputs += f"; static arguments {rule.bound_statics}"
    header = failure_header(subject.name, subject.location, prop.name, prop.sentence, inputs)
    return header + (f"\n{extra}" if extra else "")


def _pullbacks(
    ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, judge_overflow: bool = False
) -> kernels.Pullbacks:
    """Evaluate the rule and the oracles, discarding examples that cannot be judged.

    The derivative is undefined where the op's output is not finite (a singular
    matrix, say), and the truth cannot be trusted where it overflowed. Unless
    ``judge_overflow`` is set, an example where JAX's own autodiff of the reference
    overflows in the dtype is discarded too: the dtype cannot differentiate there, and
    the ``stability`` property is the one that asks the rule to.
    """
    pulled = kernels.pullbacks(rule, ctx.dtype, example.primals, cotangent)
    if not judging.is_finite([pulled.output]):
        ctx.stats.discard(f"op output not finite in {ctx.dtype.name}")
    if pulled.truth_overflowed:
        ctx.stats.discard("reference overflowed in float64")
    if not judging.is_finite(pulled.expected):
        ctx.stats.discard("reference cotangent not finite")
    if not judge_overflow and not judging.is_finite(pulled.autodiff):
        ctx.stats.discard(f"JAX's own {num.autodiff_dtype(ctx.dtype).name} autodiff not finite")
    return pulled


def _settle(ctx: Context, header: str, failures: list[str], worst: float, ambiguous: bool, example: Example | None = None) -> None:
    """Record a passing example, or fail the rule, or discard an example that a kink
    makes ambiguous: there the rule and the reference may rightly differ."""
    if not failures:
        ctx.stats.record(worst)
        return
    if ambiguous:
        ctx.stats.discard("intermediate value at a kink")
    explained = any("Diagnosis:" in f and diagnosis.NO_PATTERN not in f for f in failures)
    hint = _kink_hint(ctx.rule, example) if example is not None and not explained else None
    raise RuleMismatch("\n".join([header, *failures] + ([hint] if hint else [])))


def _kink_hint(rule: Rule, example: Example) -> str | None:
    # Only for elementwise-looking ops (data input and output share a core shape),
    # where an exact 0 input is the usual kink.
    data = rule.data_index
    elementwise = rule.signature.inputs[data] == rule.signature.output
    if rule.kinks or not elementwise or not np.any(np.asarray(example.primals[data]) == 0):
        return None
    return (
        "Hint: an input is exactly 0. If the op is not differentiable there (ReLU, abs, "
        "max), declare the point with kinks=[0.0], and vjpcheck keeps inputs away from it."
    )


def _diagnoser(ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, pulled: kernels.Pullbacks):
    """Return diagnose(i, obtained, expected) for the rule's mismatching inputs.

    The evidence that costs a kernel call (an all-ones cotangent's truth, the
    Jacobian's diagonal) is computed on the first mismatch only.
    """
    if isinstance(rule, Chain) or rule.reference is None:
        return None
    with num.truth_mode():
        high = tuple(num.cast_floats(example.primals, np.float64))
        u = np.asarray(cotangent, np.float64)
    cache: dict[str, Any] = {}

    def for_ones() -> list[Any]:
        if "ones" not in cache:
            ones = np.ones_like(u)
            with num.truth_mode():
                (_, cache["ones"]), _, _ = kernels.truth_pullback(rule)(
                    high, tuple(map(kernels.exact_size, high)), ones, kernels.exact_size(ones)
                )
        return cache["ones"]

    def diagnose(i: int, obtained: np.ndarray, expected: np.ndarray) -> str:
        position = rule.float_inputs.index(i)
        names = [rule.arg_names[j] for j in rule.float_inputs]
        others = {
            names[k]: np.asarray(value, np.float64)
            for k, value in enumerate(pulled.expected) if k != position and np.shape(value) == np.shape(expected)
        }
        diagonal = None
        if np.size(high[i]) == np.size(u) and np.size(u) > 1:
            with num.truth_mode():
                diagonal = np.asarray(kernels.diagonal_kernel(rule, i)(high, u), np.float64)
        evidence = diagnosis.Evidence(
            name=rule.arg_names[i],
            obtained=np.asarray(obtained, np.float64),
            expected=expected,
            others=others,
            for_ones=np.asarray(for_ones()[position], np.float64),
            diagonal_only=diagonal,
            sizes=example.sizes,
            cotangent=u,
        )
        return diagnosis.diagnose(evidence)

    return diagnose


def _compare_with_autodiff(
    ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, prop: Property,
    extra: str = "", judge_overflow: bool = False,
) -> kernels.Pullbacks:
    """Check the op's output and every cotangent against the reference's.

    Raises RuleMismatch, or discards the example, and returns the pullbacks otherwise.
    """
    header = _header(ctx, rule, prop, example, extra)
    _require_structure(ctx, rule, example, cotangent, header)
    pulled = _pullbacks(ctx, rule, example, cotangent, judge_overflow)
    ambiguous = judging.at_kink(pulled)
    output_text, output_ratio = judging.output_failure(ctx, pulled)
    failures, worst = judging.cotangent_failures(
        ctx, rule, pulled.obtained, pulled.expected, pulled.scales(),
        None if ambiguous else pulled.autodiff, rule.float_inputs,
        diagnose=_diagnoser(ctx, rule, example, cotangent, pulled),
    )
    if output_text:
        failures.insert(0, output_text)
    if failures and isinstance(rule, Chain):
        failures, ambiguous = _blame(ctx, pulled, failures, ambiguous)
    _settle(ctx, header, failures, max(worst, output_ratio), ambiguous, example)
    return pulled


def _blame(ctx: Context, pulled: kernels.Pullbacks, failures: list[str], ambiguous: bool) -> tuple[list[str], bool]:
    """Find the link of a failing chain that is wrong.

    A link is judged where it stood in the chain, with the inputs and cotangent it
    received; a link whose own data input sat on one of its kinks cannot be judged.
    When the wrong link is a partner of the rule under test, the example is discarded;
    when it is the rule, the failure stands even if a later kink made the chain's
    result ambiguous. Returns the failure texts and whether the example is ambiguous.
    """
    blamed = judging.blame_links(ctx, pulled)
    own = set(getattr(ctx.rule, "links", (ctx.rule,)))
    mine = [text for trace, text in blamed if trace.link in own]
    if mine:
        return mine + failures, False
    if blamed:
        names = ", ".join(sorted({repr(trace.link.name) for trace, _ in blamed}))
        ctx.stats.discard(f"a partner rule in the chain is wrong: {names}")
    if ambiguous:
        return failures, True
    return failures + [
        "Each link agrees with its own reference at the inputs it received, so the "
        "disagreement comes from composing them: check that each link's op returns what "
        "its reference returns."
    ], False


# ----------------------------------------------------------------------------------
# The properties


def _structure(ctx: Context, data: DataObject) -> None:
    rule = _bind(ctx, data, ctx.rule)
    example = _draw_example(ctx, data, rule)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    _require_structure(ctx, rule, example, cotangent, _header(ctx, rule, STRUCTURE, example))
    ctx.stats.record(0.0)


def _matches_autodiff(ctx: Context, data: DataObject) -> None:
    rule = _bind(ctx, data, ctx.rule)
    example = _draw_example(ctx, data, rule)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    _compare_with_autodiff(ctx, rule, example, cotangent, MATCHES_AUTODIFF)


def _adjoint(ctx: Context, data: DataObject) -> None:
    rule = _bind(ctx, data, ctx.rule)
    example = _draw_example(ctx, data, rule)
    tangents = draw_tangents(data, rule, example, ctx.dtype)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = _header(ctx, rule, ADJOINT, example)
    _require_structure(ctx, rule, example, cotangent, header)

    pulled = _pullbacks(ctx, rule, example, cotangent)
    ambiguous = judging.at_kink(pulled)
    with num.truth_mode():
        high = num.cast_floats(example.primals, np.float64)
    tangents = tuple(np.asarray(t, np.float64) for t in tangents)
    step = num.fd_step([high[i] for i in rule.float_inputs], tangents)
    with num.truth_mode():
        truth = kernels.adjoint_kernel(rule)(high, tangents, np.asarray(cotangent, np.float64), step)

    obtained = _pair(tangents, pulled.obtained)
    failures, ratios = [], [0.0]
    if rule.reference is not None:
        scale = sum(float(np.vdot(np.abs(t), s)) for t, s in zip(tangents, pulled.scales()))
        forward = float(truth["jvp"])
        autodiff = _pair(tangents, pulled.autodiff)
        usable = scale > 0 and np.isfinite(autodiff) and not ambiguous
        autodiff_error = abs(autodiff - forward) / scale if usable else 0.0
        tolerance = judging.tolerance(ctx, autodiff_error)
        bound = float(tolerance.bound(np.float64(scale)))
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
        tolerance = judging.tolerance(ctx, 0.0)
        bound = float(tolerance.bound(np.float64(scale)))

    failure, ratio = _judge_finite_differences(ctx, truth, obtained, scale, bound, step)
    ratios.append(ratio)
    if failure:
        failures.append(failure)
    _settle(ctx, header, failures, max(ratios), ambiguous, example)


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


def _matrix_inputs(rule: Rule) -> list[int]:
    return [i for i in rule.float_inputs if len(rule.signature.inputs[i]) == 2]


def _flattening(ctx: Context, data: DataObject) -> None:
    rule = _bind(ctx, data, ctx.rule)
    example = _draw_example(ctx, data, rule)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    header = _header(ctx, rule, FLATTENING, example)
    _require_structure(ctx, rule, example, cotangent, header)
    out_size = int(np.prod(example.output_shape))
    matrices = [i for i in _matrix_inputs(rule) if out_size * example.primals[i].size <= FLATTENING_LIMIT]
    if not matrices:
        ctx.stats.discard("Jacobian too large to build")

    pulled = _pullbacks(ctx, rule, example, cotangent)
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
    failures, worst = judging.cotangent_failures(
        ctx, rule, [pulled.obtained[p] for p in positions], expected,
        [scales[p] for p in positions], autodiff, matrices,
        diagnose=_diagnoser(ctx, rule, example, cotangent, pulled),
    )
    _settle(ctx, header, failures, worst, ambiguous, example)


def _stability(ctx: Context, data: DataObject) -> None:
    rule = _bind(ctx, data, ctx.rule)
    example = _draw_example(ctx, data, rule, widen=STABILITY_WIDTH)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    _compare_with_autodiff(ctx, rule, example, cotangent, STABILITY, judge_overflow=True)


def _composition(ctx: Context, data: DataObject) -> None:
    chain = draw_chain(
        data, ctx.rule, _with_reference(ctx.pool), ctx.max_links, bind=lambda link: _bind(ctx, data, link)
    )
    example = _draw_example(ctx, data, chain)
    cotangent = draw_cotangent(data, example.output_shape, ctx.dtype)
    extra = f"Chain: {chain.name}"
    _compare_with_autodiff(ctx, chain, example, cotangent, COMPOSITION, extra)


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

PROPERTIES: dict[str, Property] = {
    p.name: p for p in (STRUCTURE, MATCHES_AUTODIFF, ADJOINT, FLATTENING, STABILITY, COMPOSITION)
}
