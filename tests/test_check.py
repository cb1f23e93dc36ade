"""vjpcheck.check: what it returns, what it raises, and the report it writes."""

import re

import jax
import jax.numpy as jnp
import pytest

import vjpcheck as vc


@pytest.fixture
def linear(registry):
    @vc.rule("(h,d),(d),(h)->(h)", data="x", registry=registry)
    def linear(W, x, b):
        return W @ x + b

    @linear.vjp
    def _(W, x, b, out, g):
        return jnp.outer(g, x), W.T @ g, g

    return linear


@pytest.fixture
def reshaped_linear(registry):
    @vc.rule("(h,d),(d),(h)->(h)", data="x", registry=registry, name="reshaped_linear")
    def reshaped_linear(W, x, b):
        return W @ x + b

    @reshaped_linear.vjp
    def _(W, x, b, out, g):
        return jnp.outer(x, g).reshape(W.shape), W.T @ g, g

    return reshaped_linear


def report_text(rule, **options):
    with pytest.raises(vc.RuleMismatch) as info:
        vc.check(rule, **options)
    return str(info.value) + "\n" + "\n".join(getattr(info.value, "__notes__", []))


def test_check_returns_report_on_success(linear):
    report = vc.check(linear, properties=["structure", "matches_autodiff"], max_examples=10)
    assert bool(report)
    assert [r.property for r in report.results] == ["structure", "matches_autodiff"]
    assert all(r.outcome == "passed" for r in report.results)
    assert all(r.examples == 20 for r in report.results)


def test_check_leaves_x64_setting_alone(linear):
    vc.check(linear, properties=["matches_autodiff"], dtypes=["float64"], max_examples=5)
    assert jax.config.jax_enable_x64 is False
    assert jnp.ones(1).dtype == jnp.float32


def test_report_names_rule_property_input_shapes(reshaped_linear):
    text = report_text(reshaped_linear, properties=["matches_autodiff"], dtypes=["float32"], max_side=3)
    assert re.search(r"Rule 'reshaped_linear' \(tests/test_check\.py:\d+\) failed property 'matches_autodiff'\.", text)
    assert "It should hold that the op's output equals the reference's, and the cotangent for each input equals jax.vjp of the reference." in text
    assert "Inputs: W: f32[2,3], x: f32[3], b: f32[2] -> f32[2]" in text or "Inputs: W: f32[3,2], x: f32[2], b: f32[3] -> f32[3]" in text
    assert "Cotangent for 'W' (input 0):" in text
    assert "Tolerance: |obtained - expected| <= " in text
    assert "  Index  | Obtained | Expected | Tolerance" in text or "Index | Obtained" in text
    assert "Falsifying example" in text or "Failing test case" in text
    assert "To replay this example: vjpcheck.check(reshaped_linear, properties=['matches_autodiff'], dtypes=['float32'], reproduce_failure=(" in text


def test_replay_line_for_dotted_name(registry):
    import functools

    @functools.partial(jax.custom_vjp)
    def halve(x):
        return x / 2

    halve.defvjp(lambda x: (x / 2, None), lambda res, g: (g,))  # should be g / 2
    rule = vc.register(halve, "(n)->(n)", name="ops.halve", registry=registry)
    text = report_text(rule, properties=["matches_autodiff"], dtypes=["float32"], max_side=3)
    assert "To replay this example: vjpcheck.check(rule, properties=['matches_autodiff']" in text
    assert re.search(r", where rule is the vjpcheck rule 'ops.halve' declared at tests/test_check\.py:\d+", text)


def test_report_leaves_out_hypothesis_replay(reshaped_linear):
    text = report_text(reshaped_linear, properties=["matches_autodiff"], dtypes=["float32"], max_side=3)
    assert "@reproduce_failure" not in text
    assert "as a decorator on your test function" not in text
    assert re.search(r"\nDraw 5 \(cotangent\): [^\n]*\n\nTo replay this example: vjpcheck\.check\(", text)
    assert text.count("To replay this example:") == 1


def test_report_shrinks_to_distinct_sizes(reshaped_linear):
    text = report_text(reshaped_linear, properties=["matches_autodiff"], dtypes=["float32"], max_side=3)
    sizes = re.search(r"Draw 1 \(core dimension sizes\): \{'h': (\d), 'd': (\d)\}", text)
    assert sizes is not None
    assert sizes.group(1) != sizes.group(2)


def test_reproduce_failure_replays_example(reshaped_linear):
    text = report_text(reshaped_linear, properties=["matches_autodiff"], dtypes=["float32"], max_side=3)
    version, blob = re.search(r"reproduce_failure=\(('[^']+'), (b'[^']+')\)\)", text).groups()
    replay = report_text(
        reshaped_linear,
        properties=["matches_autodiff"],
        dtypes=["float32"],
        max_side=3,
        reproduce_failure=(eval(version), eval(blob)),
    )
    assert "Cotangent for 'W' (input 0):" in replay


def test_several_failures_are_combined(reshaped_linear):
    text = report_text(reshaped_linear, properties=["matches_autodiff", "flattening"], dtypes=["float32"], max_side=3)
    assert text.startswith("2 properties of rule 'reshaped_linear' failed.")
    assert "failed property 'matches_autodiff'" in text
    assert "failed property 'flattening'" in text


def test_unknown_property_rejected(linear):
    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(linear, properties=["gradients"])
    assert "unknown properties ['gradients']; choose from" in str(info.value)


def test_check_rejects_plain_function():
    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(jnp.tanh)
    assert "check() takes a vjpcheck rule" in str(info.value)


def test_call_tolerance_override_is_reported(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def scale(x):
        return 3 * x

    @scale.vjp
    def _(x, out, g):
        return (3.001 * g,)

    vc.check(scale, properties=["matches_autodiff"], rtol=1e-2, max_examples=10)
    text = report_text(scale, properties=["matches_autodiff"], rtol=1e-6, dtypes=["float32"])
    assert "(set by check(rtol=..., atol=...))" in text


def test_rule_tolerance_override_is_reported(registry):
    @vc.rule("(n)->(n)", registry=registry, rtol=1e-6)
    def scale(x):
        return 3 * x

    @scale.vjp
    def _(x, out, g):
        return (3.001 * g,)

    text = report_text(scale, properties=["matches_autodiff"], dtypes=["float32"])
    assert "(set on rule 'scale')" in text


def test_default_tolerance_origin_is_reported(reshaped_linear):
    text = report_text(reshaped_linear, properties=["matches_autodiff"], dtypes=["float32"], max_side=3)
    assert "default: floor of 16 float32 eps; JAX's own float32 autodiff error on this input:" in text


def test_rule_error_reported_with_example(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        raise ZeroDivisionError("the rule divided by zero")

    with pytest.raises(ZeroDivisionError):
        vc.check(double, properties=["matches_autodiff"], max_examples=5)
    report = vc.check_report(double, properties=["matches_autodiff"])
    result = report.results[0]
    assert result.outcome == "error"
    assert "): its backward rule raised an error during property 'matches_autodiff' in float32." in result.message
    assert "ZeroDivisionError: the rule divided by zero" in result.message
    assert 'raise ZeroDivisionError("the rule divided by zero")' in result.message
    assert "Draw 2 (x):" in result.message
