"""Declaring rules: the decorator forms, the registry, and errors in declarations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vjpcheck as vc


def test_vjp_form_is_used_by_jax_grad(registry):
    # The backward rule is deliberately not the derivative, to show that JAX uses it.
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return (7 * g,)

    grad = jax.grad(lambda x: jnp.sum(double(x)))(jnp.ones(3))
    np.testing.assert_array_equal(grad, np.full(3, 7.0))


def test_rule_works_under_jit_and_vjp(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return (5 * g,)

    out, pullback = jax.vjp(jax.jit(double), jnp.arange(3.0))
    np.testing.assert_array_equal(out, np.array([0.0, 2.0, 4.0]))
    np.testing.assert_array_equal(pullback(jnp.ones(3))[0], np.full(3, 5.0))


def test_residual_form(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def square(x):
        return x * x

    @square.fwd
    def _(x):
        return x * x, (x,)

    @square.bwd
    def _(residuals, g):
        (x,) = residuals
        return (2 * x * g,)

    grad = jax.grad(lambda x: jnp.sum(square(x)))(jnp.array([1.0, 3.0]))
    np.testing.assert_array_equal(grad, np.array([2.0, 6.0]))
    vc.check(square, max_examples=10)


def test_stacked_on_custom_vjp(registry):
    @vc.rule("(n)->(n)", registry=registry)
    @jax.custom_vjp
    def cube(x):
        return x**3

    def fwd(x):
        return x**3, x

    def bwd(x, g):
        return (3 * x**2 * g,)

    cube.defvjp(fwd, bwd)
    assert cube.kind == "custom_vjp"
    vc.check(cube, max_examples=10)


def test_register_custom_vjp_uses_its_fun(registry):
    @jax.custom_vjp
    def cube(x):
        return x**3

    cube.defvjp(lambda x: (x**3, x), lambda x, g: (2 * x**2 * g,))
    rule = vc.register(cube, "(n)->(n)", registry=registry)
    assert rule.reference is cube.fun
    with pytest.raises(vc.RuleMismatch):
        vc.check(rule, properties=["matches_autodiff"], max_examples=10)


def test_register_plain_function_needs_reference(registry):
    with pytest.raises(vc.InvalidSpec) as info:
        vc.register(jnp.tanh, "(n)->(n)", registry=registry)
    assert "'tanh' is neither a jax.custom_vjp nor a jax.custom_jvp function" in str(info.value)
    assert "reference=None" in str(info.value)


def test_register_records_caller_location(registry):
    rule = vc.register(jnp.tanh, "(n)->(n)", registry=registry, reference=lambda x: jnp.tanh(x))
    assert rule.location.startswith("tests/test_rules.py:") or rule.location.endswith(".py:" + rule.location.split(":")[-1])
    assert "test_rules.py" in rule.location


def test_every_rule_joins_its_registry(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    assert double in registry
    assert registry.get("double") is double


def test_default_registry_is_used_without_one():
    @vc.rule("(n)->(n)", name="test_rules_default_registry_member")
    def double(x):
        return 2 * x

    try:
        assert double in vc.default_registry
    finally:
        vc.default_registry.remove(double)


def test_duplicate_name_from_elsewhere_rejected(registry):
    vc.register(jnp.sin, "(n)->(n)", name="twin", registry=registry, reference=jnp.sin)
    with pytest.raises(vc.InvalidSpec) as info:
        vc.register(jnp.cos, "(n)->(n)", name="twin", registry=registry, reference=jnp.cos)
    assert "A rule named 'twin' is already registered from" in str(info.value)
    assert "Pass name='...'" in str(info.value)


def test_missing_backward_rule_reported(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(double)
    assert "has no backward rule. Decorate one with @double.vjp" in str(info.value)


def test_second_vjp_rejected(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return (2 * g,)

    with pytest.raises(vc.InvalidSpec) as info:

        @double.vjp
        def _(x, out, g):
            return (2 * g,)

    assert "already has a backward rule" in str(info.value)


def test_signature_input_count_checked(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n),(n)->(n)", registry=registry)
        def double(x):
            return 2 * x

    assert "declares 2 array input(s), but the function takes (x)" in str(info.value)


def test_unknown_spec_name_rejected(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n)->(n)", specs={"y": vc.real()}, registry=registry)
        def double(x):
            return 2 * x

    assert "specs name ['y'], which are not arguments; the arguments are ['x']" in str(info.value)


def test_index_spec_needs_known_dimension(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n),()->()", specs={"label": vc.index("k")}, registry=registry)
        def pick(x, label):
            return x[label]

    assert "index('k') names a dimension that signature '(n),()->()' does not have" in str(info.value)


def test_data_must_be_real_valued(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n),()->()", specs={"label": vc.index("n")}, data="label", registry=registry)
        def pick(x, label):
            return x[label]

    assert "data='label' is an integer input" in str(info.value)


def test_kinks_must_be_finite(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n)->(n)", kinks=[float("nan")], registry=registry)
        def relu(x):
            return jnp.maximum(x, 0.0)

    assert "kinks['x']" in str(info.value)


def test_unsupported_dtype_rejected(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n)->(n)", dtypes=["int32"], registry=registry)
        def double(x):
            return 2 * x

    assert "dtype 'int32' is not supported; use float32, float64, bfloat16, float16." in str(info.value)


def test_negative_rtol_rejected(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule("(n)->(n)", rtol=-1.0, registry=registry)
        def double(x):
            return 2 * x

    assert "rtol=-1.0 must be a finite number >= 0" in str(info.value)


def test_describe_signature(registry):
    @vc.rule("(h,d),(d),(h)->(h)", data="x", registry=registry)
    def linear(W, x, b):
        return W @ x + b

    assert linear.describe_signature() == "linear(W(h,d), x(d), b(h)) -> (h)"
    assert linear.data_index == 1


def make_leaky_relu(registry, negative_slope_grad):
    from hypothesis import strategies as st

    @vc.rule(
        "(n)->(n)", specs={"slope": vc.static(st.sampled_from([0.01, 0.1, 0.3]))},
        kinks=[0.0], registry=registry,
    )
    def leaky_relu(x, slope):
        return jnp.where(x > 0, x, slope * x)

    @leaky_relu.vjp
    def _(x, slope, out, g):
        return (jnp.where(x > 0, g, negative_slope_grad(slope) * g),)

    return leaky_relu


def test_static_argument_rule_passes(registry):
    rule = make_leaky_relu(registry, lambda slope: slope)
    assert rule.arg_names == ("x",)
    assert rule.static_names == ["slope"]
    report = vc.check(rule, properties=["matches_autodiff", "adjoint"], dtypes=["float32"], max_examples=15)
    assert all(r.outcome == "passed" for r in report.results)


def test_static_argument_rule_caught(registry):
    rule = make_leaky_relu(registry, lambda slope: 1.0)
    with pytest.raises(vc.RuleMismatch) as info:
        vc.check(rule, properties=["matches_autodiff"], dtypes=["float32"], max_examples=30)
    assert "; static arguments slope=" in str(info.value)


def test_static_argument_uses_nondiff_argnums(registry):
    rule = make_leaky_relu(registry, lambda slope: slope)
    grad = jax.grad(lambda x: jnp.sum(rule(x, 0.1)))(jnp.array([-1.0, 2.0]))
    np.testing.assert_allclose(grad, [0.1, 1.0])


def test_bind_needs_every_static(registry):
    rule = make_leaky_relu(registry, lambda slope: slope)
    with pytest.raises(vc.InvalidSpec) as info:
        rule.bind()
    assert "bind() needs exactly the static arguments ['slope'], got []." in str(info.value)


def test_register_custom_vjp_with_static(registry):
    import functools

    from hypothesis import strategies as st

    @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
    def scale(x, factor):
        return factor * x

    scale.defvjp(lambda x, factor: (factor * x, None), lambda factor, res, g: (factor * g,))
    rule = vc.register(scale, "(n)->(n)", specs={"factor": vc.static(st.floats(0.5, 2.0))}, registry=registry)
    report = vc.check(rule, properties=["structure", "matches_autodiff"], dtypes=["float32"], max_examples=10)
    assert [r.outcome for r in report.results] == ["passed", "passed"]
