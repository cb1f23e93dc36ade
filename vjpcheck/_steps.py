"""Steps that the properties share: bind static arguments, draw, check the structure,
evaluate, judge, and settle an example as passed, failed or discarded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from hypothesis.strategies import DataObject

from vjpcheck import _diagnosis as diagnosis
from vjpcheck import _judging as judging
from vjpcheck import _kernels as kernels
from vjpcheck import _numerics as num
from vjpcheck._chains import Chain
from vjpcheck._context import Context
from vjpcheck._errors import RuleMismatch
from vjpcheck._report import describe_inputs, failure_header
from vjpcheck._rules import Rule
from vjpcheck._specs import Index, Positive, Real
from vjpcheck._strategies import Example
from vjpcheck._strategies import draw_example as draw_primals


class Named(Protocol):
    """A property, as failure headers need it."""

    name: str
    sentence: str


def bind(ctx: Context, data: DataObject, rule: Rule) -> Rule:
    """Draw the rule's static arguments, if it has any, and return it bound to them."""
    if not rule.static_specs:
        return rule
    values = {
        rule.all_names[i]: data.draw(rule.static_specs[i].strategy, label=rule.all_names[i])
        for i in sorted(rule.static_specs)
    }
    return rule.bind(**values)


def draw_example(
    ctx: Context,
    data: DataObject,
    rule: Rule,
    widen: float = 1.0,
    sizes: dict[str, int] | None = None,
    suffix: str = "",
    on_kinks: bool = False,
) -> Example:
    example = draw_primals(
        data, rule, ctx.dtype, ctx.shapes, on_give_up=ctx.stats.note_discard, widen=widen,
        sizes=sizes, suffix=suffix, on_kinks=on_kinks,
    )
    ctx.stats.current = (rule.arg_names, example.primals)
    return example


Header = Callable[[], str]


def require_structure(ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, header: Header) -> None:
    problems = kernels.structure_problems(rule, example.primals, cotangent, ctx.dtype, example.output_shape)
    if problems and isinstance(rule, Chain) and rule is not ctx.rule:
        # A chain drawn to test the rule in composition: a partner's malformed
        # cotangents are the partner's failure, shown by its own 'structure' property.
        own = getattr(ctx.rule, "links", (ctx.rule,))
        prefixes = tuple(f"in link {link.name!r} ({link.location}):" for link in own)
        mine = [p for p in problems if p.startswith(prefixes)]
        if not mine:
            partners = sorted({
                repr(link.name) for link in rule.links
                if any(p.startswith(f"in link {link.name!r} ({link.location}):") for p in problems)
            })
            ctx.stats.discard(f"a partner rule in the chain is wrong: {', '.join(partners)}")
        problems = mine
    if problems:
        raise RuleMismatch(header() + "\n" + "\n".join(problems))


def heading(ctx: Context, rule: Rule, prop: Named, example: Example, extra: str = "") -> Header:
    """Return a function that writes the failure report's first lines.

    Passing examples never need them, so they are written only on a failure."""
    return lambda: _heading(ctx, rule, prop, example, extra)


def _heading(ctx: Context, rule: Rule, prop: Named, example: Example, extra: str = "") -> str:
    subject = ctx.rule
    inputs = describe_inputs(rule.arg_names, num.cast_floats(example.primals, ctx.dtype), example.output_shape, ctx.dtype)
    if rule.bound_statics:
        inputs += f"; static arguments {rule.bound_statics}"
    sentence = prop.sentence
    if rule.reference is None and getattr(prop, "sentence_without_reference", None):
        sentence = prop.sentence_without_reference
    header = failure_header(subject.name, subject.location, prop.name, sentence, inputs)
    return header + (f"\n{extra}" if extra else "")


def pullbacks(
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


def settle(ctx: Context, header: Header, failures: list[str], worst: float, ambiguous: bool, example: Example | None = None) -> None:
    """Record a passing example, or fail the rule, or discard an example that a kink
    makes ambiguous: there the rule and the reference may rightly differ."""
    if not failures:
        ctx.stats.record(worst)
        return
    if ambiguous:
        ctx.stats.discard("intermediate value at a kink")
    explained = any("Diagnosis:" in f and diagnosis.NO_PATTERN not in f for f in failures)
    hint = kink_hint(ctx.rule, example) if example is not None and not explained else None
    raise RuleMismatch("\n".join([header(), *failures] + ([hint] if hint else [])))


def kink_hint(rule: Rule, example: Example) -> str | None:
    # Only for elementwise-looking ops (data input and output share a core shape),
    # where an exact 0 input is the usual kink.
    if isinstance(rule, Chain) or rule.kinks or len(example.primals) != len(rule.arg_names):
        return None
    data = rule.data_index
    elementwise = rule.signature.inputs[data] == rule.signature.output
    if not elementwise or not np.any(np.asarray(example.primals[data]) == 0):
        return None
    if rule.reference is not None and not _derivative_jumps_at_zero(rule, example):
        return None
    return (
        "Hint: an input is exactly 0. If the op is not differentiable there (ReLU, abs, "
        "max), declare the point with kinks=[0.0], and vjpcheck keeps inputs away from it."
    )


def _derivative_jumps_at_zero(rule: Rule, example: Example) -> bool:
    """Return whether the reference's cotangent for the data input jumps across its
    zero elements, as it does at a kink.

    A smooth op's one-sided values differ in proportion to the distance between them,
    so the difference shrinks a thousandfold with the step; a kink's stays.
    """
    data = rule.data_index
    values = np.asarray(example.primals[data], np.float64)
    step = judging.KINK_STEP * max(1.0, float(np.max(np.abs(values))))
    ones = np.ones(example.output_shape)

    def cotangent_at(shift: float) -> np.ndarray:
        primals = list(num.cast_floats(example.primals, np.float64))
        primals[data] = np.where(values == 0, shift, values)
        primals = tuple(primals)
        with num.truth_mode():
            (_, pulled), _, _ = kernels.truth_pullback(rule)(
                primals, tuple(kernels.exact_size(a) for a in primals), ones, kernels.exact_size(ones)
            )
        return np.asarray(pulled[rule.float_inputs.index(data)], np.float64)

    near = float(np.max(np.abs(cotangent_at(step) - cotangent_at(-step))))
    far = float(np.max(np.abs(cotangent_at(1e3 * step) - cotangent_at(-1e3 * step))))
    return near > 0.1 * far and near > 0.0


def diagnoser(ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, pulled: kernels.Pullbacks):
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
        if "dense" not in cache:
            cache["dense"] = _dense_evidence(rule, example, u)
        dense = cache["dense"][position] if cache["dense"] is not None else None
        return diagnosis.confirm(evidence, dense)

    return diagnose


# Seeded, so that a failure report is the same on every run.
_DENSE_SEED = 20261204


def _dense_evidence(rule: Rule, example: Example, cotangent: np.ndarray) -> list[diagnosis.Evidence] | None:
    """Evaluate the rule and the truth in float64 on a random input with every named
    dimension one larger than in the example, and return the evidence for each real
    input. Return None where a spec is not a plain range, because a uniform draw would
    leave a domain such as spd().

    One larger, because at size 2 any two-element vectors that sum to zero are
    proportional, so a constant factor fits many mistakes there.
    """
    rng = np.random.default_rng(_DENSE_SEED)
    sizes = {name: size + 1 for name, size in example.sizes.items()}
    shapes, output_shape = rule.signature.shapes(sizes)
    primals = []
    for spec, value, shape in zip(rule.specs, example.primals, shapes):
        if isinstance(spec, Index):
            primals.append(rng.integers(0, sizes[spec.dim], size=shape).astype(np.asarray(value).dtype))
        elif type(spec) in (Real, Positive):
            primals.append(rng.uniform(spec.min_value, spec.max_value, size=shape))
        else:
            return None
    high = tuple(primals)
    u = rng.uniform(-1.0, 1.0, size=output_shape)
    ones = np.ones_like(u)
    exact = tuple(map(kernels.exact_size, high))
    with num.truth_mode():
        _, obtained, _, _ = kernels.rule_pullback(rule, False)(high, exact, u, kernels.exact_size(u), None, None)
        (_, expected), _, overflowed = kernels.truth_pullback(rule)(high, exact, u, kernels.exact_size(u))
        (_, for_ones), _, _ = kernels.truth_pullback(rule)(high, exact, ones, kernels.exact_size(ones))
    expected = [np.asarray(e, np.float64) for e in expected]
    if bool(overflowed) or not judging.is_finite(expected) or not judging.is_finite(obtained):
        return None
    names = [rule.arg_names[j] for j in rule.float_inputs]
    result = []
    for position, i in enumerate(rule.float_inputs):
        diagonal = None
        if np.size(high[i]) == np.size(u) and np.size(u) > 1:
            with num.truth_mode():
                diagonal = np.asarray(kernels.diagonal_kernel(rule, i)(high, u), np.float64)
        result.append(diagnosis.Evidence(
            name=rule.arg_names[i],
            obtained=np.asarray(obtained[position], np.float64),
            expected=expected[position],
            others={
                names[k]: value for k, value in enumerate(expected)
                if k != position and np.shape(value) == np.shape(expected[position])
            },
            for_ones=np.asarray(for_ones[position], np.float64),
            diagonal_only=diagonal,
            sizes=sizes,
            cotangent=u,
        ))
    return result


def subgradients(rule: Rule, example: Example, cotangent: np.ndarray, pulled: kernels.Pullbacks):
    """For a rule that accepts subgradients, the interval of valid cotangents at the
    example's kink points, as (midpoints, half-widths); None otherwise."""
    if not rule.subgradients or isinstance(rule, Chain) or pulled.expected is None:
        return None
    with num.truth_mode():
        high = num.cast_floats(example.primals, np.float64)
    return judging.subgradient_interval(rule, high, cotangent, pulled.expected)


def compare_with_autodiff(
    ctx: Context, rule: Rule, example: Example, cotangent: np.ndarray, prop: Named,
    extra: str = "", judge_overflow: bool = False,
) -> kernels.Pullbacks:
    """Check the op's output and every cotangent against the reference's.

    Raises RuleMismatch, or discards the example, and returns the pullbacks otherwise.
    """
    header = heading(ctx, rule, prop, example, extra)
    require_structure(ctx, rule, example, cotangent, header)
    pulled = pullbacks(ctx, rule, example, cotangent, judge_overflow)
    ambiguous = judging.at_kink(pulled)
    output_text, output_ratio = judging.output_failure(ctx, pulled)
    expected, slack = pulled.expected, None
    interval = subgradients(rule, example, cotangent, pulled)
    if interval is not None:
        expected, slack = interval
    failures, worst = judging.cotangent_failures(
        ctx, rule, pulled.obtained, expected, pulled.scales(),
        None if ambiguous or interval is not None else pulled.autodiff, rule.float_inputs,
        diagnose=diagnoser(ctx, rule, example, cotangent, pulled),
        slack=slack,
    )
    if output_text:
        failures.insert(0, output_text)
    if failures and isinstance(rule, Chain):
        failures, ambiguous = blame(ctx, pulled, failures, ambiguous)
    settle(ctx, header, failures, max(worst, output_ratio), ambiguous, example)
    return pulled


def blame(ctx: Context, pulled: kernels.Pullbacks, failures: list[str], ambiguous: bool) -> tuple[list[str], bool]:
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
        return mine + ["For the whole chain, against jax.vjp of the composed references:"] + failures, False
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
