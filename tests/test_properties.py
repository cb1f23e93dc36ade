"""Each property catches the wrong rules it should and passes their correct twins.

Every wrong rule here is a mistake people make when deriving a VJP by hand. Each test
runs only the property under test, so that it shows that this property, on its own,
catches the mistake.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

import vjpcheck as vc


def check_one(rule, prop, **options):
    # float32 alone and sides up to 3 keep compilation, and so the suite, fast; the
    # worked-rule tests cover float64.
    options.setdefault("dtypes", ["float32"])
    options.setdefault("max_side", 3)
    return vc.check(rule, properties=[prop], **options)


def report_one(rule, prop, **options):
    # check_report, because check() raises when no requested property applies.
    options.setdefault("dtypes", ["float32"])
    options.setdefault("max_side", 3)
    return vc.check_report(rule, properties=[prop], **options)


def failure_text(rule, prop, **options):
    with pytest.raises(vc.RuleMismatch) as info:
        check_one(rule, prop, **options)
    return str(info.value) + "\n" + "\n".join(getattr(info.value, "__notes__", []))


# ----------------------------------------------------------------------------------
# Rules used below: a correct version and wrong ones.


def make_linear(registry, weight_grad, name="linear", signature="(h,d),(d),(h)->(h)"):
    @vc.rule(signature, data="x", registry=registry, name=name)
    def linear(W, x, b):
        return W @ x + b

    @linear.vjp
    def _(W, x, b, out, g):
        return weight_grad(g, x), W.T @ g, g

    return linear


def correct_weight_grad(g, x):
    return jnp.outer(g, x)


def transposed_weight_grad(g, x):
    return jnp.outer(x, g)


def reshaped_weight_grad(g, x):
    return jnp.outer(x, g).reshape(g.shape[0], x.shape[0])


def make_batched_linear(registry, bias_grad):
    @vc.rule("(n,d),(h,d),(h)->(n,h)", registry=registry, name="batched_linear")
    def batched_linear(X, W, b):
        return X @ W.T + b

    @batched_linear.vjp
    def _(X, W, b, out, G):
        return G @ W, G.T @ X, bias_grad(G)

    return batched_linear


def make_softmax(registry, backward):
    @vc.rule("(n)->(n)", registry=registry, output=vc.positive(), name="softmax")
    def softmax(x):
        e = jnp.exp(x - jnp.max(x))
        return e / jnp.sum(e)

    @softmax.vjp
    def _(x, s, g):
        return (backward(s, g),)

    return softmax


def full_softmax_backward(s, g):
    return s * (g - jnp.dot(s, g))


def diagonal_softmax_backward(s, g):
    return s * (1 - s) * g


def make_relu(registry, backward):
    @vc.rule("(n)->(n)", kinks=[0.0], registry=registry, name="relu")
    def relu(x):
        return jnp.maximum(x, 0.0)

    @relu.vjp
    def _(x, out, g):
        return (backward(x, out, g),)

    return relu


def make_cross_entropy(registry, backward):
    @vc.rule(
        "(n),()->()",
        specs={"p": vc.positive(0.01, 1.0), "label": vc.index("n")},
        registry=registry,
        name="cross_entropy",
    )
    def cross_entropy(p, label):
        return -jnp.log(p[label])

    @cross_entropy.vjp
    def _(p, label, out, g):
        return backward(p, label, g), None

    return cross_entropy


def scaled_cross_entropy_backward(p, label, g):
    return -g * jax.nn.one_hot(label, p.shape[0], dtype=p.dtype) / p[label]


def unscaled_cross_entropy_backward(p, label, g):
    return -jax.nn.one_hot(label, p.shape[0], dtype=p.dtype) / p[label]


def make_product(registry, backward):
    @vc.rule("(n),(n)->(n)", registry=registry, name="product")
    def product(x, y):
        return x * y + x

    @product.vjp
    def _(x, y, out, g):
        return backward(x, y, g)

    return product


# ----------------------------------------------------------------------------------
# structure


def test_structure_passes_correct_linear(registry):
    check_one(make_linear(registry, correct_weight_grad), "structure")


def test_structure_catches_transposed_weight_grad(registry):
    text = failure_text(make_linear(registry, transposed_weight_grad), "structure")
    assert "failed property 'structure'" in text
    assert "cotangent for 'W' (input 0) is f32[" in text


def test_structure_catches_list_return(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return [2 * g]

    text = failure_text(double, "structure")
    assert "the backward rule returned a list; return a tuple of 1 cotangent (x)." in text


def test_structure_catches_bare_array_return(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return 2 * g

    text = failure_text(double, "structure")
    assert "returned a single f32[" in text
    assert "such as (g,) for one input" in text


def test_structure_catches_missing_cotangent(registry):
    @vc.rule("(n),(n)->(n)", registry=registry)
    def add(x, y):
        return x + y

    @add.vjp
    def _(x, y, out, g):
        return (g,)

    text = failure_text(add, "structure")
    assert "the backward rule returned 1 cotangent for 2 inputs (x, y)." in text


def test_structure_catches_float_label_cotangent(registry):
    @vc.rule("(n),()->()", specs={"label": vc.index("n")}, registry=registry)
    def pick(x, label):
        return x[label]

    @pick.vjp
    def _(x, label, out, g):
        return g * jax.nn.one_hot(label, x.shape[0], dtype=x.dtype), jnp.zeros((), x.dtype)

    text = failure_text(pick, "structure")
    assert "cotangent for 'label' (input 1) is f32[]; an integer input takes None or a float0" in text


def test_structure_accepts_float0_label_cotangent(registry):
    @vc.rule("(n),()->()", specs={"label": vc.index("n")}, registry=registry)
    def pick(x, label):
        return x[label]

    @pick.vjp
    def _(x, label, out, g):
        float0 = jnp.zeros((), dtype=jax.dtypes.float0)
        return g * jax.nn.one_hot(label, x.shape[0], dtype=x.dtype), float0

    check_one(pick, "structure")


def test_structure_catches_float64_for_float32(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return (2 * g.astype(jnp.float64),)

    with jax.enable_x64(True):
        text = failure_text(double, "structure", dtypes=["float32"])
    assert "is f64[" in text
    assert "expected f32[" in text


# ----------------------------------------------------------------------------------
# matches_autodiff


def test_matches_autodiff_passes_correct_linear(registry):
    check_one(make_linear(registry, correct_weight_grad), "matches_autodiff")


def test_matches_autodiff_catches_reshaped_weight_grad(registry):
    text = failure_text(make_linear(registry, reshaped_weight_grad), "matches_autodiff")
    assert "Cotangent for 'W' (input 0)" in text


def test_matches_autodiff_catches_transpose_on_square(registry):
    rule = make_linear(registry, transposed_weight_grad, signature="(d,d),(d),(d)->(d)")
    text = failure_text(rule, "matches_autodiff")
    assert "Cotangent for 'W' (input 0)" in text


def test_matches_autodiff_catches_missing_batch_sum(registry):
    rule = make_batched_linear(registry, lambda G: G[0])
    text = failure_text(rule, "matches_autodiff")
    assert "Cotangent for 'b' (input 2)" in text
    assert "Draw 1 (core dimension sizes): {'n': 2" in text


def test_matches_autodiff_passes_batch_sum(registry):
    check_one(make_batched_linear(registry, lambda G: jnp.sum(G, axis=0)), "matches_autodiff")


def test_matches_autodiff_catches_flipped_sign(registry):
    text = failure_text(make_product(registry, lambda x, y, g: (g * (y + 1), -g * x)), "matches_autodiff")
    assert "Cotangent for 'y' (input 1)" in text
    assert "Cotangent for 'x' (input 0)" not in text


def test_matches_autodiff_catches_swapped_cotangents(registry):
    text = failure_text(make_product(registry, lambda x, y, g: (g * x, g * (y + 1))), "matches_autodiff")
    assert "Cotangent for 'x' (input 0)" in text
    assert "Cotangent for 'y' (input 1)" in text


def test_matches_autodiff_passes_correct_product(registry):
    check_one(make_product(registry, lambda x, y, g: (g * (y + 1), g * x)), "matches_autodiff")


def test_matches_autodiff_catches_diagonal_softmax(registry):
    text = failure_text(make_softmax(registry, diagonal_softmax_backward), "matches_autodiff")
    assert "Draw 1 (core dimension sizes): {'n': 2}" in text


def test_matches_autodiff_passes_full_softmax(registry):
    check_one(make_softmax(registry, full_softmax_backward), "matches_autodiff")


def test_matches_autodiff_catches_output_mask(registry):
    rule = make_relu(registry, lambda x, out, g: jnp.where(out >= 0, g, 0.0))
    text = failure_text(rule, "matches_autodiff")
    assert "Cotangent for 'x' (input 0): 1 of " in text
    assert "| 1        | 0        |" in text


def test_matches_autodiff_passes_input_mask(registry):
    check_one(make_relu(registry, lambda x, out, g: jnp.where(x > 0, g, 0.0)), "matches_autodiff")


def test_matches_autodiff_catches_unscaled_cross_entropy(registry):
    text = failure_text(make_cross_entropy(registry, unscaled_cross_entropy_backward), "matches_autodiff")
    assert "Cotangent for 'p' (input 0)" in text


def test_matches_autodiff_passes_scaled_cross_entropy(registry):
    check_one(make_cross_entropy(registry, scaled_cross_entropy_backward), "matches_autodiff")


# ----------------------------------------------------------------------------------
# adjoint


def test_adjoint_passes_correct_product(registry):
    check_one(make_product(registry, lambda x, y, g: (g * (y + 1), g * x)), "adjoint")


def test_adjoint_catches_flipped_sign(registry):
    text = failure_text(make_product(registry, lambda x, y, g: (g * (y + 1), -g * x)), "adjoint")
    assert "Forward mode: sum_i <H_i, G_i> against <U, Df(X)[H]> from jax.jvp" in text
    assert "Finite differences: sum_i <H_i, G_i> against" in text


def test_adjoint_catches_diagonal_softmax(registry):
    failure_text(make_softmax(registry, diagonal_softmax_backward), "adjoint")


def test_adjoint_passes_without_reference(registry):
    @vc.rule("(n)->(n)", reference=None, registry=registry)
    def cube(x):
        return x**3

    @cube.vjp
    def _(x, out, g):
        return (3 * x**2 * g,)

    check_one(cube, "adjoint")


def test_adjoint_catches_wrong_rule_without_reference(registry):
    @vc.rule("(n)->(n)", reference=None, registry=registry)
    def cube(x):
        return x**3

    @cube.vjp
    def _(x, out, g):
        return (2 * x**2 * g,)

    text = failure_text(cube, "adjoint")
    assert "Finite differences" in text
    assert "Forward mode" not in text
    assert "with Df(X)[H] from central finite differences (the rule declares no reference)." in text
    assert "jax.jvp" not in text


# ----------------------------------------------------------------------------------
# flattening


def test_flattening_passes_correct_linear(registry):
    check_one(make_linear(registry, correct_weight_grad), "flattening")


def test_flattening_catches_transpose_on_square(registry):
    rule = make_linear(registry, transposed_weight_grad, signature="(d,d),(d),(d)->(d)")
    text = failure_text(rule, "flattening")
    assert "failed property 'flattening'" in text
    assert "Cotangent for 'W' (input 0)" in text


def test_flattening_tolerates_forward_mode_underflow(registry):
    # Logits (0, 72, -576) for label 0: the cotangent for W[2, 0] is s_2 * 72, about
    # 2e-280, which jax.vjp computes. The forward-mode Jacobian multiplies s_0 (5e-32)
    # by s_2 (3e-282), which flushes to zero, so that route gives -0. The difference is
    # the truth's own error, and must not fail the correct rule.
    hidden = 72.0
    fixed = vc.array_strategy(lambda shape, dtype: st.just(np.array([[0.0], [1.0], [-8.0]], dtype)))

    @vc.rule("(3,1)->()", specs={"W": fixed}, registry=registry, name="nll_label0")
    def nll_label0(W):
        return -jnp.log(jax.nn.softmax(W @ jnp.full((1,), hidden, W.dtype))[0])

    @nll_label0.vjp
    def _(W, out, g):
        h = jnp.full((1,), hidden, W.dtype)
        s = jax.nn.softmax(W @ h)
        return (jnp.outer(g * (s - jax.nn.one_hot(0, 3, dtype=s.dtype)), h),)

    report = check_one(nll_label0, "flattening", dtypes=["float64"], max_examples=5)
    assert report.results[0].outcome == "passed"


def test_check_raises_when_nothing_applies(registry):
    with pytest.raises(vc.InvalidSpec) as info:
        check_one(make_softmax(registry, full_softmax_backward), "flattening")
    assert "no property requested for rule 'softmax' applies to it (flattening: the rule has no matrix input)" in str(info.value)


def test_flattening_not_applicable_without_matrix(registry):
    report = report_one(make_softmax(registry, full_softmax_backward), "flattening")
    result = report.results[0]
    assert result.outcome == "not applicable"
    assert result.message == "the rule has no matrix input"


# ----------------------------------------------------------------------------------
# composition


def test_composition_passes_correct_rules(registry):
    linear = make_linear(registry, correct_weight_grad)
    make_relu(registry, lambda x, out, g: jnp.where(x > 0, g, 0.0))
    check_one(linear, "composition")


def test_composition_blames_the_wrong_link(registry):
    make_linear(registry, correct_weight_grad)
    relu = make_relu(registry, lambda x, out, g: jnp.where(out >= 0, g, 0.0))
    text = failure_text(relu, "composition")
    assert "Chain: " in text
    assert "At the inputs and cotangent that link " in text
    assert "(relu, tests/test_properties.py:" in text
    assert "For the whole chain, against jax.vjp of the composed references:" in text


def test_composition_spares_rule_with_wrong_partner(registry):
    linear = make_linear(registry, correct_weight_grad)
    make_relu(registry, lambda x, out, g: jnp.where(out >= 0, g, 0.0))
    report = check_one(linear, "composition", max_examples=60)
    result = report.results[0]
    assert result.outcome == "passed"
    assert result.discarded["a partner rule in the chain is wrong: 'relu'"] > 0


def test_composition_spares_rule_with_malformed_partner(registry):
    # The partner returns a float16 cotangent for a float32 input: its own 'structure'
    # fails, and chains with it are discarded for the correct rule, not failed.
    linear = make_linear(registry, correct_weight_grad)
    make_relu(registry, lambda x, out, g: jnp.where(x > 0, g, 0.0).astype(jnp.float16))
    report = check_one(linear, "composition", max_examples=60)
    result = report.results[0]
    assert result.outcome == "passed"
    assert result.discarded["a partner rule in the chain is wrong: 'relu'"] > 0


def make_half_square(registry):
    # The backward rule matches its reference, but the op returns twice the
    # reference's output.
    @vc.rule("(n)->(n)", registry=registry, reference=lambda x: x**2 / 2, name="half_square")
    def half_square(x):
        return x**2

    @half_square.vjp
    def _(x, out, g):
        return (x * g,)

    return half_square


def test_matches_autodiff_catches_wrong_output(registry):
    text = failure_text(make_half_square(registry), "matches_autodiff")
    assert "Output of the op: " in text
    assert "The op returns something other than its reference." in text


def test_matches_autodiff_catches_wrong_fwd(registry):
    @vc.rule("(n)->(n)", registry=registry, name="tripled")
    def tripled(x):
        return 3 * x

    @tripled.fwd
    def _(x):
        return 3 * x + 1, None

    @tripled.bwd
    def _(residuals, g):
        return (3 * g,)

    text = failure_text(tripled, "matches_autodiff")
    assert "Output of the op: " in text
    assert "Cotangent for" not in text


def test_composition_blames_wrong_output(registry):
    half_square = make_half_square(registry)
    make_relu(registry, lambda x, out, g: jnp.where(x > 0, g, 0.0))
    text = failure_text(half_square, "composition")
    assert "Chain: " in text
    assert "(half_square, tests/test_properties.py:" in text


def test_composition_not_applicable_without_partner(registry):
    report = report_one(make_cross_entropy(registry, scaled_cross_entropy_backward), "composition")
    result = report.results[0]
    assert result.outcome == "not applicable"
    assert "no registered rule chains with 'cross_entropy'" in result.message


def test_composition_discards_kink_disagreement(registry):
    # x >= 0 picks the subgradient 1 at the kink, where jnp.maximum's derivative is 0.5;
    # both are valid, so chains that feed relu an exact 0 are discarded, not failed.
    # x - y feeds relu an exact 0 whenever Hypothesis draws x == y, which it often does.
    @vc.rule("(n),(n)->(n)", registry=registry, name="difference")
    def difference(x, y):
        return x - y

    @difference.vjp
    def _(x, y, out, g):
        return g, -g

    make_relu(registry, lambda x, out, g: jnp.where(x >= 0, g, 0.0))
    report = check_one(difference, "composition", max_examples=200)
    result = report.results[0]
    assert result.outcome == "passed"
    assert result.discarded["intermediate value at a kink"] > 0


def test_at_kink_sees_split_sides():
    from vjpcheck._judging import at_kink
    from vjpcheck._kernels import KinkValue, Pullbacks

    pulled = Pullbacks([], [], kinks=[KinkValue(values=(np.array([1e-9]), np.array([1e-9]), np.array([-1e-9])), kinks=(0.0,))])
    assert at_kink(pulled)


def test_at_kink_sees_exact_kink():
    from vjpcheck._judging import at_kink
    from vjpcheck._kernels import KinkValue, Pullbacks

    pulled = Pullbacks([], [], kinks=[KinkValue(values=(np.array([0.0, 2.0]),) * 3, kinks=(0.0,))])
    assert at_kink(pulled)


def test_at_kink_ignores_same_side():
    from vjpcheck._judging import at_kink
    from vjpcheck._kernels import KinkValue, Pullbacks

    pulled = Pullbacks([], [], kinks=[KinkValue(values=(np.array([0.5, -2.0]),) * 3, kinks=(0.0,))])
    assert not at_kink(pulled)

# ----------------------------------------------------------------------------------
# linearity, transforms, determinism, second_order


def make_scale(registry, backward, **options):
    @vc.rule("(n)->(n)", registry=registry, name="scale", **options)
    def scale(x):
        return 3 * x

    @scale.vjp
    def _(x, out, g):
        return (backward(x, g),)

    return scale


def test_linearity_passes_linear_rule(registry):
    check_one(make_scale(registry, lambda x, g: 3 * g), "linearity")


def test_linearity_catches_offset(registry):
    text = failure_text(make_scale(registry, lambda x, g: 3 * g + 0.5), "linearity")
    assert "bwd(a U + b V) against a bwd(U) + b bwd(V), cotangent for 'x' (input 0)" in text
    assert "bwd(0), cotangent for 'x' (input 0)" in text


def test_linearity_catches_nonlinear_cotangent(registry):
    text = failure_text(make_scale(registry, lambda x, g: 3 * g * jnp.abs(g)), "linearity")
    assert "bwd(a U + b V) against a bwd(U) + b bwd(V)" in text


def test_linearity_discards_unbounded_rounding(registry):
    # exp(100) overflows float32, so the rounding bound of the rule's cotangent is
    # inf * 0 = NaN although the cotangent itself is finite. No tolerance exists
    # there: the examples are discarded and counted, never judged as failures.
    rule = make_scale(registry, lambda x, g: g * jnp.minimum(jnp.exp(100.0 + 0 * x), 1.0))
    report = vc.check_report(rule, properties=["linearity"], dtypes=["float32"], max_side=3)
    result = report.results[0]
    assert result.outcome == "error"
    assert result.discarded["rule's intermediate values overflowed"] > 0
    assert "could not draw enough valid examples" in result.message


def make_counting(registry):
    calls = [0]

    def backward(x, g):
        calls[0] += 1
        return 3 * g * calls[0]

    return make_scale(registry, backward)


def test_transforms_discards_unbounded_rounding(registry):
    # An infinite rounding bound means an unknown error, so the example is discarded
    # and counted instead of judged as if the values were exact.
    rule = make_scale(registry, lambda x, g: g * jnp.minimum(jnp.exp(100.0 + 0 * x), 1.0))
    report = vc.check_report(rule, properties=["transforms"], dtypes=["float32"], max_side=3)
    result = report.results[0]
    assert result.outcome == "error"
    assert result.discarded["rule's intermediate values overflowed"] > 0


def test_transforms_passes_pure_rule(registry):
    check_one(make_scale(registry, lambda x, g: 3 * g), "transforms")


def test_transforms_catches_python_state(registry):
    # The counter's value is baked in when JAX traces the rule, so the eager, jitted
    # and vmapped results differ; which comparison shows it first depends on the draw.
    text = failure_text(make_counting(registry), "transforms")
    assert "failed property 'transforms'" in text
    assert ("Eagerly against under jax.jit" in text) or ("Under jax.vmap" in text)


def test_determinism_passes_pure_rule(registry):
    check_one(make_scale(registry, lambda x, g: 3 * g), "determinism")


def test_determinism_catches_python_state(registry):
    text = failure_text(make_counting(registry), "determinism")
    assert "Two calls of bwd on the same residuals, cotangent for 'x' (input 0): the two calls differ" in text


def make_residual_sin(registry, through_global):
    saved = {}

    @vc.rule("(n)->(n)", registry=registry, name="residual_sin")
    def residual_sin(x):
        return jnp.sin(x)

    @residual_sin.fwd
    def _(x):
        saved["x"] = x
        return jnp.sin(x), (x,)

    @residual_sin.bwd
    def _(residuals, g):
        x = saved["x"] if through_global else residuals[0]
        return (jnp.cos(x) * g,)

    return residual_sin


def test_determinism_passes_residual_rule(registry):
    check_one(make_residual_sin(registry, through_global=False), "determinism")


def test_determinism_catches_state_between_fwd_and_bwd(registry):
    # bwd reads x from a global that the latest fwd wrote, which is right when each fwd
    # is followed by its own bwd and wrong in a network's backward pass.
    text = failure_text(make_residual_sin(registry, through_global=True), "determinism")
    assert (
        "bwd on the same residuals before and after a forward pass on other inputs, cotangent "
        "for 'x' (input 0): the two calls differ" in text
    )
    assert "pass every value bwd needs from fwd in the residuals" in text


def test_second_order_passes_differentiable_rule(registry):
    rule = make_scale(registry, lambda x, g: 3 * g, second_order=True)
    check_one(rule, "second_order")


def test_second_order_catches_stop_gradient(registry):
    import jax

    @vc.rule("(n)->(n)", registry=registry, second_order=True, name="cube")
    def cube(x):
        return x**3

    @cube.vjp
    def _(x, out, g):
        return (3 * jax.lax.stop_gradient(x) ** 2 * g,)

    check_one(cube, "matches_autodiff")
    text = failure_text(cube, "second_order")
    assert "Second-order cotangent for 'x' (input 0)" in text


def test_second_order_needs_declaration(registry):
    report = report_one(make_scale(registry, lambda x, g: 3 * g), "second_order")
    assert report.results[0].outcome == "not applicable"
    assert report.results[0].message == "the rule does not declare second_order=True"


def test_adjoint_names_wrong_input(registry):
    text = failure_text(make_product(registry, lambda x, y, g: (g * (y + 1), -g * x)), "adjoint")
    assert "Checked one input at a time, the identity fails for 'y'." in text


# ----------------------------------------------------------------------------------
# finite_differences


def make_cube(registry, factor):
    @vc.rule("(n)->(n)", reference=None, registry=registry, name="cube")
    def cube(x):
        return x**3

    @cube.vjp
    def _(x, out, g):
        return (factor * x**2 * g,)

    return cube


def test_finite_differences_pass_correct_rule(registry):
    check_one(make_cube(registry, 3.0), "finite_differences")


def test_finite_differences_catch_wrong_rule(registry):
    text = failure_text(make_cube(registry, 2.0), "finite_differences")
    assert "Cotangent for 'x' (input 0) against central differences:" in text


def test_finite_differences_inconclusive_at_jump(registry):
    from hypothesis import strategies as st

    # Every draw sits on the jump at 1, where the quotients grow as the step shrinks.
    @vc.rule("(n)->(n)", reference=None, registry=registry, specs={"x": vc.elements(st.just(1.0))}, name="step_up")
    def step_up(x):
        return x + jnp.where(x >= 1.0, 1.0, 0.0)

    @step_up.vjp
    def _(x, out, g):
        return (g,)

    result = check_one(step_up, "finite_differences").results[0]
    assert result.outcome == "inconclusive"
    assert "finite differences could not judge " in result.message


def test_adjoint_says_forward_mode_agreed(registry):
    # The op scales by a stop_gradient factor, so its VJP matches JAX's derivative but
    # not the op's finite differences.
    @vc.rule("(n)->(n)", registry=registry, name="scaled_sg")
    def scaled_sg(x):
        return x * jax.lax.stop_gradient(jnp.sum(x**2) + 1)

    @scaled_sg.vjp
    def _(x, out, g):
        return (g * (jnp.sum(x**2) + 1),)

    text = failure_text(scaled_sg, "adjoint")
    assert "Forward mode (jax.jvp of the reference) agrees with the rule here" in text
    assert "the op may use stop_gradient" in text
