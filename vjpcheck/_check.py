"""Run properties on a rule with Hypothesis and collect the results."""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, HypothesisException, Unsatisfiable
from hypothesis.reporting import with_reporter

from vjpcheck._diagnose_errors import describe_error
from vjpcheck._errors import InvalidSpec, RuleMismatch
from vjpcheck._timeout import ExampleTimeout, time_limit
from vjpcheck._context import Context, Stats
from vjpcheck._properties import PROPERTIES, Property
from vjpcheck._rules import BrokenRule, Rule, _normalise_dtypes
from vjpcheck._strategies import ShapeOptions

PASSED, FAILED, ERROR, NOT_APPLICABLE = "passed", "failed", "error", "not applicable"
# Every example was discarded because the oracle could not judge it: not a pass, and
# not a failure of the rule.
INCONCLUSIVE = "inconclusive"
_INCONCLUSIVE_REASON = "finite differences inconclusive"
# JAX adds this note when it hides its own frames from a traceback; reports show only
# the user's frames anyway.
_JAX_FILTER_NOTE = "--------------------\nFor simplicity, JAX has removed"
_SEED = re.compile(r"@seed\((\d+)\)")
_BLOB = re.compile(r"@reproduce_failure\((?P<version>'[^']*'|\"[^\"]*\"), (?P<blob>b'[^']*'|b\"[^\"]*\")\)")


@dataclasses.dataclass
class PropertyResult:
    """The outcome of one property on one rule, over all its dtypes."""

    rule: Rule
    property: str
    outcome: str
    dtypes: tuple[np.dtype, ...] = ()
    examples: int = 0
    discarded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    worst_ratio: float = 0.0
    seconds: float = 0.0
    message: str = ""
    exception: BaseException | None = None


@dataclasses.dataclass
class CheckReport:
    """The results of `check` on one rule; truthy when every property passed."""

    rule: Rule
    results: list[PropertyResult]

    @property
    def failures(self) -> list[PropertyResult]:
        return [r for r in self.results if r.outcome in (FAILED, ERROR)]

    def __bool__(self) -> bool:
        return not self.failures


@dataclasses.dataclass(frozen=True)
class RunOptions:
    max_examples: int | None = None
    rtol: float | None = None
    atol: float | None = None
    shapes: ShapeOptions = ShapeOptions()
    max_links: int = 5
    settings: hypothesis.settings | None = None
    reproduce_failure: tuple[str, bytes] | None = None
    seed: int | None = None
    # Seconds one example may run before it is stopped; None for no limit.
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_examples is not None and (not isinstance(self.max_examples, int) or self.max_examples < 1):
            raise InvalidSpec(f"max_examples={self.max_examples!r} must be an integer of at least 1.")
        for label in ("rtol", "atol"):
            value = getattr(self, label)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InvalidSpec(f"{label}={value!r} must be a finite number >= 0, or None for the default.")
        if not isinstance(self.max_links, int) or self.max_links < 2:
            raise InvalidSpec(f"max_links={self.max_links!r} must be an integer of at least 2.")
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise InvalidSpec(f"timeout={self.timeout!r} must be a number of seconds > 0, or None.")

    @classmethod
    def build(
        cls,
        *,
        max_examples: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        min_side: int = 1,
        max_side: int = 4,
        distinct_dims: bool = True,
        max_links: int = 5,
        settings: hypothesis.settings | None = None,
        reproduce_failure: tuple[str, bytes] | None = None,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> RunOptions:
        """Build options from the keyword arguments of `check`."""
        return cls(
            max_examples=max_examples,
            rtol=rtol,
            atol=atol,
            shapes=ShapeOptions(min_side=min_side, max_side=max_side, distinct_dims=distinct_dims),
            max_links=max_links,
            settings=settings,
            reproduce_failure=reproduce_failure,
            seed=seed,
            timeout=timeout,
        )


def check(
    rule: Rule,
    *,
    properties: Iterable[str] | None = None,
    max_examples: int | None = None,
    dtypes: Sequence[Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    pool: Iterable[Rule] | None = None,
    min_side: int = 1,
    max_side: int = 4,
    distinct_dims: bool = True,
    max_links: int = 5,
    settings: hypothesis.settings | None = None,
    reproduce_failure: tuple[str, bytes] | None = None,
    seed: int | None = None,
    timeout: float | None = None,
) -> CheckReport:
    """Check a rule's VJP with every property (or those named) and every dtype.

    Args:
      rule: a `Rule` from `rule`, `register` or `chain`.
      properties: names from `PROPERTIES` (default: all).
      max_examples: Hypothesis examples per property and dtype (default: the active
        Hypothesis settings profile's ``max_examples``).
      dtypes: dtypes to check (default: the rule's, float32 and float64 unless set).
      rtol, atol: tolerance overrides for this call; see the error model in the docs.
      pool: rules that `composition` may chain with (default: the rule's registry).
      min_side, max_side: bounds on drawn core dimension sizes.
      distinct_dims: draw different sizes for differently named dimensions.
      max_links: longest chain that `composition` draws.
      settings: Hypothesis settings to start from (default: the active profile).
      reproduce_failure: ``(version, blob)`` from a failure report, to replay it.
      seed: seed for Hypothesis's random draws, to replay a run.
      timeout: seconds one example may run before the check stops it and reports an
        error (default: no limit). It works in the main thread only.

    Returns:
      A `CheckReport` when every property passed or does not apply, and at least one
      applies.

    Raises:
      RuleMismatch: a property failed; the message holds every failure report.
      InvalidSpec: the call or the rule's declaration is invalid, or no requested
        property applies to the rule.

    >>> # report = vjpcheck.check(linear, max_examples=50)
    """
    report = check_report(
        rule,
        properties=properties,
        dtypes=dtypes,
        pool=pool,
        options=RunOptions.build(
            max_examples=max_examples,
            rtol=rtol,
            atol=atol,
            min_side=min_side,
            max_side=max_side,
            distinct_dims=distinct_dims,
            max_links=max_links,
            settings=settings,
            reproduce_failure=reproduce_failure,
            seed=seed,
            timeout=timeout,
        ),
    )
    failed = [r for r in report.results if r.outcome == FAILED]
    errors = [r for r in report.results if r.outcome == ERROR]
    if len(failed) + len(errors) == 1 and (failed or errors)[0].exception is not None:
        raise (failed or errors)[0].exception
    if failed or errors:
        text = "\n\n".join(r.message for r in failed + errors)
        raise RuleMismatch(f"{len(failed) + len(errors)} properties of rule {rule.name!r} failed.\n\n{text}")
    if report.results and all(r.outcome == NOT_APPLICABLE for r in report.results):
        # Returning would let a test that wraps check() pass without checking anything.
        reasons = "; ".join(f"{r.property}: {r.message}" for r in report.results)
        raise InvalidSpec(
            f"no property requested for rule {rule.name!r} applies to it ({reasons}). "
            "Request properties that apply, or vjpcheck.check_report() to inspect the outcomes."
        )
    return report


def check_report(
    rule: Rule,
    *,
    properties: Iterable[str] | None = None,
    dtypes: Sequence[Any] | None = None,
    pool: Iterable[Rule] | None = None,
    options: RunOptions | None = None,
    **run_options: Any,
) -> CheckReport:
    """Like `check`, but return every result, failures included, without raising.

    It takes `check`'s keyword arguments, or prepared ``options``.

    >>> # report = vjpcheck.check_report(linear, max_examples=50)
    >>> # failed = [r.property for r in report.results if r.outcome == "failed"]
    """
    if options is None:
        options = RunOptions.build(**run_options)
    elif run_options:
        raise InvalidSpec(f"pass either options= or {sorted(run_options)}, not both.")
    if isinstance(rule, BrokenRule):
        raise rule.error
    if not isinstance(rule, Rule):
        raise InvalidSpec(
            f"check() takes a vjpcheck rule, not {rule!r}; declare it with "
            "@vjpcheck.rule(...) or vjpcheck.register(fn, signature)."
        )
    names = select_properties(properties)
    dtypes = _normalise_dtypes(dtypes, rule.name) if dtypes is not None else rule.dtypes
    pool = [r for r in (pool if pool is not None else rule.registry) if isinstance(r, Rule)]
    if rule.missing:
        raise InvalidSpec(rule.missing)
    results: list[PropertyResult] = []
    for name in names:
        if any(r.property == "structure" and r.outcome in (FAILED, ERROR) for r in results):
            # Every value property would report the same malformed cotangents again.
            message = "not run, because the rule fails 'structure'; its report shows why."
            results.append(PropertyResult(rule, name, NOT_APPLICABLE, tuple(dtypes), message=message))
            continue
        results.append(run_property(rule, name, dtypes=dtypes, pool=pool, options=options))
    return CheckReport(rule=rule, results=results)


def select_properties(properties: Iterable[str] | None) -> list[str]:
    if properties is None:
        return list(PROPERTIES)
    if isinstance(properties, str):
        properties = [properties]
    names = list(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise InvalidSpec(f"unknown properties {unknown}; choose from {list(PROPERTIES)}.")
    return names


def run_property(rule: Rule, name: str, *, dtypes: Sequence[np.dtype], pool: Sequence[Rule], options: RunOptions) -> PropertyResult:
    """Run one property for every dtype; stop at the first dtype that fails."""
    prop = PROPERTIES[name]
    reason = prop.not_applicable(rule, pool)
    if reason:
        return PropertyResult(rule, name, NOT_APPLICABLE, tuple(dtypes), message=reason)
    # The dtypes field lists the dtypes that ran: a failure stops at its dtype.
    result = PropertyResult(rule, name, PASSED, ())
    start = time.perf_counter()
    for dtype in dtypes:
        result.dtypes += (dtype,)
        stats = Stats()
        ctx = Context(
            rule=rule, dtype=dtype, shapes=options.shapes, rtol=options.rtol,
            atol=options.atol, pool=pool, max_links=options.max_links, stats=stats, prop=prop,
        )
        outcome, message, exception = _run_hypothesis(ctx, name, options)
        result.examples += stats.examples
        result.discarded.update(stats.discarded)
        result.worst_ratio = max(result.worst_ratio, stats.worst_ratio)
        if outcome != PASSED:
            result.outcome, result.message, result.exception = outcome, message, exception
            break
    result.seconds = time.perf_counter() - start
    return result


def _hypothesis_settings(options: RunOptions, prop: Property) -> hypothesis.settings:
    parent = options.settings or hypothesis.settings()
    overrides: dict[str, Any] = {
        "deadline": None,
        "print_blob": True,
        # The explain phase reports which lines of vjpcheck ran, which tells nothing about
        # the rule, and costs a compilation per variation it tries.
        "phases": [phase for phase in parent.phases if phase != Phase.explain],
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.differing_executors]
        + ([HealthCheck.filter_too_much] if prop.many_discards else []),
        # One failure per property, the minimal one, rather than an ExceptionGroup.
        "report_multiple_bugs": False,
    }
    if options.max_examples is not None:
        overrides["max_examples"] = options.max_examples
    return hypothesis.settings(parent, **overrides)


def _run_hypothesis(ctx: Context, name: str, options: RunOptions) -> tuple[str, str, BaseException | None]:
    prop = PROPERTIES[name]

    def test(data):
        with time_limit(options.timeout):
            prop.run(ctx, data)

    # Hypothesis keys its example database on the test function's source, which is the
    # same for every rule, so each rule, property and dtype adds its own key.
    test._hypothesis_internal_add_digest = (
        f"vjpcheck:{ctx.rule.name}:{ctx.rule.location}:{name}:{ctx.dtype.name}".encode()
    )
    # Hypothesis prints this name in the falsifying example, so it names what ran.
    test.__name__ = test.__qualname__ = re.sub(r"\W", "_", f"{ctx.rule.name}__{name}__{ctx.dtype.name}")
    runner = given(st.data())(test)
    runner = _hypothesis_settings(options, prop)(runner)
    if options.reproduce_failure is not None:
        runner = hypothesis.reproduce_failure(*options.reproduce_failure)(runner)
    if options.seed is not None:
        runner = hypothesis.seed(options.seed)(runner)
    # Hypothesis prints some advice (a @seed line) through its reporter; keep it for
    # the report instead, because library code does not print.
    printed: list[str] = []
    try:
        with with_reporter(printed.append):
            runner()
    except ExampleTimeout as error:
        message = _timeout_message(ctx, name, options.timeout)
        return ERROR, message, error
    except RuleMismatch as error:
        return FAILED, _with_notes(error, ctx, name, printed=printed), error
    except (FailedHealthCheck, Unsatisfiable) as error:
        message = _discard_message(ctx, name, error)
        if ctx.stats.examples == 0 and set(ctx.stats.discarded) == {_INCONCLUSIVE_REASON}:
            return INCONCLUSIVE, (
                f"Rule {ctx.rule.name!r} ({ctx.rule.location}): property {name!r} in "
                f"{ctx.dtype.name} is inconclusive: finite differences could not judge "
                f"{ctx.stats.discarded[_INCONCLUSIVE_REASON]} of the "
                f"{ctx.stats.discarded[_INCONCLUSIVE_REASON]} examples drawn, because their "
                "step sizes disagreed with each other more than with the rule."
            ), None
        return ERROR, message, InvalidSpec(message)
    except InvalidSpec as error:
        return ERROR, _with_notes(error, ctx, name, printed=printed), error
    except HypothesisException as error:
        message = f"Hypothesis stopped property {name!r} of rule {ctx.rule.name!r} in {ctx.dtype.name}: {error}"
        return ERROR, _with_notes(error, ctx, name, message, printed), error
    except Exception as error:  # the rule, the op or the reference raised
        message = describe_error(error, ctx.rule, name, ctx.dtype.name)
        return ERROR, _with_notes(error, ctx, name, message, printed), error
    undecided = ctx.stats.discarded.get(_INCONCLUSIVE_REASON, 0)
    if undecided > ctx.stats.examples:
        # Most examples could not be judged; the few that passed say little.
        return INCONCLUSIVE, (
            f"Rule {ctx.rule.name!r} ({ctx.rule.location}): property {name!r} in "
            f"{ctx.dtype.name} is inconclusive: finite differences could not judge "
            f"{undecided} of the {undecided + ctx.stats.examples} examples drawn, because "
            "their step sizes disagreed with each other more than with the rule."
        ), None
    return PASSED, "", None


def _with_notes(
    error: BaseException,
    ctx: Context,
    name: str,
    message: str | None = None,
    printed: Sequence[str] = (),
) -> str:
    """Return the report: the message, Hypothesis's notes, and lines to replay it.

    Hypothesis's own line about decorating the test function with @reproduce_failure
    is left out of the report and of the exception's notes, because that test function
    is inside vjpcheck. vjpcheck's replay line takes its place.
    """
    notes = list(getattr(error, "__notes__", []))
    replays = []
    for text in printed:
        seed = _SEED.search(text)
        if seed:
            replays.append(
                f"To replay this run: vjpcheck.check({_rule_expression(ctx.rule)}, properties=[{name!r}], "
                f"dtypes=[{ctx.dtype.name!r}], seed={seed[1]}), or vjpcheck check --seed {seed[1]}"
            )
    replay = _replay_line(ctx, name, notes)
    if replay:
        replays.append(replay)
    notes = [n for n in notes if not _BLOB.search(n)]
    if replays:
        # A blank line sets the replay lines apart from the drawn example above them.
        notes += ["\n" + replays[0], *replays[1:]]
    error.__notes__ = notes
    text = message if message is not None else str(error)
    return "\n".join([text, *(n for n in notes if not n.startswith(_JAX_FILTER_NOTE))])


def _replay_line(ctx: Context, name: str, notes: Sequence[str]) -> str | None:
    for note in notes:
        match = _BLOB.search(note)
        if match:
            line = (
                f"To replay this example: vjpcheck.check({_rule_expression(ctx.rule)}, properties="
                f"[{name!r}], dtypes=[{ctx.dtype.name!r}], reproduce_failure=("
                f"{match['version']}, {match['blob']}))"
            )
            if not ctx.rule.name.isidentifier():
                line += f", where rule is the vjpcheck rule {ctx.rule.name!r} declared at {ctx.rule.location}"
            if name == "composition":
                partners = ", ".join(sorted({r.name for r in ctx.pool}))
                line += f", with the same rules registered to chain with: {partners}"
            return line
    return None


def _rule_expression(rule: Rule) -> str:
    # A rule's name is usually the variable that stores it. A chain's name ("a -> b") or
    # a registered function's ("jax.nn.softmax") is no Python name, so the line uses "rule".
    return rule.name if rule.name.isidentifier() else "rule"


def _timeout_message(ctx: Context, name: str, timeout: float) -> str:
    example = "\n".join(f"  {line}" for line in ctx.stats.describe_current()) or "  (not drawn yet)"
    return (
        f"Rule {ctx.rule.name!r} ({ctx.rule.location}): one example of property {name!r} in "
        f"{ctx.dtype.name} ran for more than the time limit of {timeout:g} s and was stopped. "
        "If the rule is only slow, raise the limit with --timeout (vjpcheck check) or "
        f"timeout= (vjpcheck.check). The example:\n{example}"
    )


def _discard_message(ctx: Context, name: str, error: BaseException) -> str:
    """Explain a run that Hypothesis stopped because too few draws were valid.

    Hypothesis's own message is kept only when vjpcheck recorded no discard that
    explains the stop. Its advice (a @settings decorator, rewriting a filter) is about
    a test function inside vjpcheck, which the user cannot change.
    """
    reasons = ", ".join(f"{count} x {reason}" for reason, count in ctx.stats.discarded.most_common())
    message = (
        f"Rule {ctx.rule.name!r} ({ctx.rule.location}): property {name!r} in "
        f"{ctx.dtype.name} could not draw enough valid examples "
        f"({ctx.stats.examples} ran; discarded: {reasons or 'none recorded'}). "
        "Widen the specs so that fewer draws are discarded."
    )
    return message if reasons else f"{message}\nHypothesis: {error}"

