"""Misuse and crashes: each gets a message that names the rule, the value and the fix.

Declaration mistakes raise vjpcheck.InvalidSpec when the rule is declared (see also
test_rules.py and test_specs.py); mistakes that only show when the rule runs are
reported as that rule's error, and every other rule still runs.
"""

import re
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

import vjpcheck as vc
from vjpcheck._cli import EXIT_ERROR, EXIT_FAILED, main


def error_message(rule, prop="matches_autodiff", **options):
    report = vc.check_report(rule, properties=[prop], dtypes=["float32"], options=vc._check.RunOptions(**options))
    result = report.results[0]
    assert result.outcome == "error", result.message
    return result.message


def declare(registry, signature, backward, primal=lambda x: 2 * x, **options):
    rule = vc.rule(signature, registry=registry, name="op", **options)(primal)
    rule.vjp(backward)
    return rule


def test_unparsable_signature_message(registry):
    with pytest.raises(vc.InvalidSpec) as info:
        vc.rule("(n->(n)", registry=registry)(lambda x: x)
    assert "signature='(n->(n)' is not a valid gufunc signature." in str(info.value)
    assert "as in '(h,d),(d),(h)->(h)'" in str(info.value)


def test_inconsistent_dimensions_message(registry):
    rule = vc.rule("(n),(m)->()", registry=registry, name="dot")(lambda x, y: x @ y)
    rule.vjp(lambda x, y, out, g: (g * y, g * x))
    message = error_message(rule)
    assert "Rule 'dot' (" in message
    assert "its op raised an error during property 'matches_autodiff' in float32." in message
    assert "The shapes may not match the signature '(n),(m)->()'" in message


def test_output_shape_mismatch_message(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: (g[:1],), primal=lambda x: jnp.sum(x, keepdims=True))
    message = error_message(rule)
    assert "rule 'op': the op returned f32[1] but signature '(n)->(n)' gives the output shape" in message
    assert "correct the signature's output or the op." in message


def test_non_array_cotangent_message(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: ("not an array",))
    message = vc.check_report(rule, properties=["structure"], dtypes=["float32"]).results[0].message
    assert "the backward rule returned a value that is not an array" in message


def test_rule_traceback_shows_user_frames(registry):
    def backward(x, out, g):
        return (2 * g + undefined_name,)  # noqa: F821

    message = error_message(declare(registry, "(n)->(n)", backward))
    assert "its backward rule raised an error" in message
    assert "NameError: name 'undefined_name' is not defined" in message
    assert "in backward" in message
    assert "Draw 2 (x):" in message


def test_jit_only_error_explained(registry):
    def backward(x, out, g):
        if x[0] > 0:
            return (2 * g,)
        return (2 * g,)

    message = error_message(declare(registry, "(n)->(n)", backward))
    assert "TracerBoolConversionError" in message
    assert "vjpcheck runs the rule under jax.jit" in message
    assert "Use jnp.where, jax.lax.cond or jax.numpy functions instead." in message


def test_reference_not_differentiable_message(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: (out * g,), primal=jnp.exp, reference=lambda x: np.exp(x))
    message = error_message(rule)
    assert "its reference raised an error" in message
    assert "pass reference=None to check the rule against finite differences alone." in message


def test_unsatisfiable_spec_names_argument(registry):
    rule = declare(
        registry, "(n)->(n)", lambda x, out, g: (2 * g,),
        specs={"x": st.floats(0, 1).filter(lambda v: v > 2)},
    )
    message = error_message(rule)
    assert "could not draw enough valid examples" in message
    assert "the spec for 'x' gave up on a draw" in message
    assert "Widen the specs" in message


def test_never_finite_output_message(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: (0.0 * g,), primal=lambda x: x * jnp.inf)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = error_message(rule)
        determinism = vc.check_report(rule, properties=["determinism"], dtypes=["float32"]).results[0]
    assert [str(w.message) for w in caught] == []
    assert "could not draw enough valid examples (0 ran; discarded: " in message
    assert "x op output not finite in float32)" in message
    assert "Widen the specs" in message
    assert "Hypothesis" not in message
    assert "suppress_health_check" not in message
    assert determinism.outcome == "passed"


def test_example_timeout_message(registry):
    def backward(x, out, g):
        while True:
            pass

    message = error_message(declare(registry, "(n)->(n)", backward), prop="structure", timeout=0.5)
    assert "ran for more than the time limit of 0.5 s and was stopped." in message
    assert "raise the limit with --timeout" in message
    assert "x = [" in message


def test_composition_without_partner_lists_signatures(registry):
    rule = declare(registry, "(n)->()", lambda x, out, g: (g * jnp.ones_like(x),), primal=jnp.sum)
    result = vc.check_report(rule, properties=["composition"]).results[0]
    assert result.outcome == "not applicable"
    assert "no registered rule chains with 'op' (n)->()" in result.message
    assert "Rules tried: op (n)->()." in result.message


MIXED_MODULE = '''
import jax.numpy as jnp
import numpy as np
import vjpcheck as vc

@vc.rule("(n)->(n)")
def good_double(x):
    return 2 * x

@good_double.vjp
def _(x, out, g):
    return (2 * g,)

@vc.rule("(n)->(m)")
def bad_signature(x):
    return x

@vc.rule("(n)->(n)")
def returns_list(x):
    return 2 * x

@returns_list.vjp
def _(x, out, g):
    return [2 * g]

@vc.rule("(n)->(n)")
def raises(x):
    return 2 * x

@raises.vjp
def _(x, out, g):
    raise RuntimeError("backward rule exploded")

@vc.rule("(n)->(n)", reference=lambda x: np.sin(x))
def numpy_reference(x):
    return jnp.sin(x)

@numpy_reference.vjp
def _(x, out, g):
    return (jnp.cos(x) * g,)

@vc.rule("(n)->(n)")
def good_square(x):
    return x * x

@good_square.vjp
def _(x, out, g):
    return (2 * x * g,)
'''


def test_mixed_module_checks_good_rules(tmp_path, capsys, forget_new_rules):
    path = tmp_path / "mixed_rules.py"
    path.write_text(textwrap.dedent(MIXED_MODULE))
    code = main(["check", str(path), "--max-examples", "5", "--property", "structure", "--property", "matches_autodiff", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == EXIT_FAILED
    assert "ERROR: bad_signature [declaration]" in out
    assert "uses dimension 'm' in the output but in no input" in out
    assert "FAIL: returns_list [structure]" in out
    assert "ERROR: raises [matches_autodiff]" in out
    assert "RuntimeError: backward rule exploded" in out
    assert "ERROR: numpy_reference [matches_autodiff]" in out
    assert "good_double" in out
    assert "good_square" in out
    assert "FAIL: good_double" not in out
    assert "ERROR: good_square" not in out
    assert "5 passed, 2 failed, 4 errors" in out


BAD_DECLARATIONS = '''
import jax.numpy as jnp
import vjpcheck as vc

@vc.rule("(n)->(n)", frobnicate=True)
def unknown_option(x):
    return 2 * x

@unknown_option.vjp
def _(x, out, g):
    return (2 * g,)

@vc.rule("(n)->(n)", specs={"x": vc.positive(5, 1)})
def inverted_range(x):
    return jnp.log(x)

@inverted_range.vjp
def _(x, out, g):
    return (g / x,)

@vc.rule("(n)->(n)")
def after_the_errors(x):
    return 3 * x

@after_the_errors.vjp
def _(x, out, g):
    return (3 * g,)
'''


def test_bad_declarations_leave_module_loading(tmp_path, capsys, forget_new_rules):
    # An unknown option and a spec constructor that raises both sit in the module body.
    # Each becomes one rule's error, and the rule after them is still checked.
    path = tmp_path / "bad_declarations.py"
    path.write_text(BAD_DECLARATIONS)
    code = main(["check", str(path), "--max-examples", "5", "--property", "structure", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == EXIT_ERROR
    assert "ERROR: unknown_option [declaration]" in out
    assert "bad_declarations.py:5: vjpcheck.rule() got an unknown option 'frobnicate'." in out
    assert "ERROR: inverted_range [declaration]" in out
    assert "bad_declarations.py:13: positive(min_value=5, max_value=1): min_value must be less than max_value." in out
    assert "The spec is created at " in out
    assert "ERROR: after_the_errors" not in out
    assert re.search(r"after_the_errors +│ structure +│ PASS", out)


def test_bad_spec_raises_outside_commands():
    with pytest.raises(vc.InvalidSpec) as info:
        vc.positive(5, 1)
    assert "min_value must be less than max_value" in str(info.value)


def test_errors_alone_exit_three(tmp_path, capsys, forget_new_rules):
    path = tmp_path / "only_errors.py"
    path.write_text(textwrap.dedent('''
        import vjpcheck as vc

        @vc.rule("(n)->(n)")
        def raises(x):
            return 2 * x

        @raises.vjp
        def _(x, out, g):
            raise RuntimeError("backward rule exploded")
    '''))
    code = main(["check", str(path), "--max-examples", "5", "--property", "matches_autodiff"])
    assert code == EXIT_ERROR


def test_zero_max_examples_rejected(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: (2 * g,))
    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(rule, max_examples=0)
    assert "max_examples=0 must be an integer of at least 1." in str(info.value)


def test_negative_call_rtol_rejected(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: (2 * g,))
    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(rule, rtol=-1.0)
    assert "rtol=-1.0 must be a finite number >= 0" in str(info.value)


def test_misspelled_option_suggests_name(registry):
    with pytest.raises(vc.InvalidSpec) as info:
        vc.rule("(n)->(n)", kink=[0.0], registry=registry)
    assert "vjpcheck.rule() got an unknown option 'kink'. Did you mean 'kinks'?" in str(info.value)


def test_bare_decorator_explained():
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule
        def double(x):
            return 2 * x

    assert "@vjpcheck.rule needs a signature: write @vjpcheck.rule('(n)->(n)') above double" in str(info.value)


def test_nondiff_argnums_need_static_specs(registry):
    import functools

    import jax

    @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
    def scale(x, factor):
        return factor * x

    scale.defvjp(lambda x, factor: (factor * x, None), lambda factor, res, g: (factor * g,))
    with pytest.raises(vc.InvalidSpec) as info:
        vc.register(scale, "(n)->(n)", registry=registry)
    assert "has nondiff_argnums=(1,), so vjpcheck needs a vjpcheck.static(strategy) spec for exactly those arguments (['factor'])" in str(info.value)


def test_static_array_draw_explained(registry):
    rule = vc.rule("(n)->(n)", specs={"k": vc.static(st.just(np.ones(2)))}, registry=registry)(lambda x, k: x)
    rule.vjp(lambda x, k, out, g: (g,))
    message = error_message(rule, prop="structure")
    assert "the static argument 'k' drew an array (ndarray of shape (2,))" in message
    assert "list the argument in the signature instead." in message


def test_static_unhashable_draw_explained(registry):
    rule = vc.rule("(n)->(n)", specs={"k": vc.static(st.just([1, 2]))}, registry=registry)(lambda x, k: x)
    rule.vjp(lambda x, k, out, g: (g,))
    message = error_message(rule, prop="structure")
    assert "the static argument 'k' drew [1, 2], which is not hashable" in message


def test_output_shape_checked_before_backward(registry):
    rule = vc.rule("(h,d),(d)->(d)", registry=registry, name="matvec")(lambda W, x: W @ x)
    rule.vjp(lambda W, x, out, g: (jnp.outer(g, x), W.T @ g))
    message = vc.check_report(rule, properties=["structure"], dtypes=["float32"]).results[0].message
    assert "rule 'matvec': the op returned f32[" in message
    assert "correct the signature's output or the op." in message


def test_integer_argument_without_index_explained(registry):
    rule = vc.rule("(n),()->()", registry=registry, name="pick")(lambda x, i: x[i])
    rule.vjp(lambda x, i, out, g: (jnp.zeros_like(x), None))
    message = error_message(rule, prop="structure")
    assert "Declare it with specs={'name': vjpcheck.index('n')}" in message


def test_structure_failure_skips_value_properties(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: [2 * g])
    report = vc.check_report(rule, properties=["structure", "matches_autodiff"], dtypes=["float32"], max_examples=5)
    outcomes = [(r.property, r.outcome) for r in report.results]
    assert outcomes == [("structure", "failed"), ("matches_autodiff", "not applicable")]
    assert report.results[1].message == "not run, because the rule fails 'structure'; its report shows why."


def test_check_report_takes_check_options(registry):
    rule = declare(registry, "(n)->(n)", lambda x, out, g: (2 * g,))
    report = vc.check_report(rule, properties=["matches_autodiff"], dtypes=["float32"], max_examples=3)
    assert report.results[0].examples == 3


def test_vjp_with_missing_parameter_explained(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, g):
        return (2 * g,)

    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(double, properties=["structure"], dtypes=["float32"], max_examples=3)
    assert "rule 'double': its @double.vjp function _(x, g) cannot be called as vjp(x, out, g)" in str(info.value)


def test_bwd_with_extra_parameter_explained(registry):
    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.fwd
    def _(x):
        return 2 * x, ()

    @double.bwd
    def _(x, residuals, g):
        return (2 * g,)

    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(double, properties=["structure"], dtypes=["float32"], max_examples=3)
    assert "its @double.bwd function _(x, residuals, g) cannot be called as bwd(residuals, g)" in str(info.value)


def test_tree_vjp_arity_names_arguments(registry):
    @vc.rule(vc.tree_signature({"w": "(n)"}, output="(n)"), registry=registry)
    def scale(params):
        return 2 * params["w"]

    @scale.vjp
    def _(params, g):
        return ({"w": 2 * g},)

    with pytest.raises(vc.InvalidSpec) as info:
        vc.check(scale, properties=["structure"], dtypes=["float32"], max_examples=3)
    assert "cannot be called as vjp(params, out, g)" in str(info.value)


TREE_DECLARATIONS = '''
import vjpcheck as vc

ROW_SPEC = vc.real(3, 1)

@vc.rule(vc.tree_signature({"W": "(h,d"}, output="(h)"))
def unparsable_tree(params):
    return params["W"].sum(axis=1)

@vc.rule("(n)->(n)", specs={"x": ROW_SPEC})
def uses_spec_from_above(x):
    return 2 * x

@vc.rule("(n)->(n)")
def after_the_errors(x):
    return 3 * x

@after_the_errors.vjp
def _(x, out, g):
    return (3 * g,)
'''


def test_bad_tree_signature_is_one_rule_error(tmp_path, capsys, forget_new_rules):
    path = tmp_path / "tree_declarations.py"
    path.write_text(TREE_DECLARATIONS)
    code = main(["check", str(path), "--max-examples", "5", "--property", "structure", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == EXIT_ERROR
    assert "ERROR: unparsable_tree [declaration]" in out
    assert "is '(h,d', which is not a core shape" in out
    assert "ERROR: uses_spec_from_above [declaration]" in out
    assert "tree_declarations.py:4." in out  # where the broken spec is created
    assert re.search(r"after_the_errors +│ structure +│ PASS", out)


def test_tree_signature_needs_output():
    with pytest.raises(vc.InvalidSpec) as info:
        vc.tree_signature({"W": "(h,d)"})
    assert "tree_signature() needs output=, the core shape of the one array the op returns" in str(info.value)


INCOMPLETE_DECLARATIONS = '''
import vjpcheck as vc

UNUSED = vc.positive(5, 1)

@vc.rule("(n)->(n)")
def no_backward(x):
    return 2 * x

@vc.rule("(n)->(n)")
def two_parameters(x):
    return 2 * x

@two_parameters.vjp
def _(x, g):
    return (2 * g,)

@vc.rule("(n)->(n)")
def complete(x):
    return 3 * x

@complete.vjp
def _(x, out, g):
    return (3 * g,)
'''


def test_incomplete_rules_are_one_error_each(tmp_path, capsys, forget_new_rules):
    path = tmp_path / "incomplete.py"
    path.write_text(INCOMPLETE_DECLARATIONS)
    code = main(["check", str(path), "--max-examples", "5", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == EXIT_ERROR
    assert out.count("ERROR: no_backward [declaration]") == 1
    assert "rule 'no_backward' has no backward rule" in out
    assert out.count("ERROR: two_parameters [declaration]") == 1
    assert "cannot be called as vjp(x, out, g)" in out
    assert "no_backward [structure]" not in out
    assert re.search(r"complete +│ structure +│ PASS", out)


def test_unused_broken_spec_reported(tmp_path, capsys, forget_new_rules):
    # A module name of its own, so that this test's import runs the module's body.
    path = tmp_path / "unused_spec.py"
    path.write_text(INCOMPLETE_DECLARATIONS)
    main(["check", str(path), "--max-examples", "5", "--dtype", "float32", "--property", "structure"])
    out = capsys.readouterr().out
    assert "unused_spec.py:4: positive(min_value=5, max_value=1): min_value must be less than max_value." in out


def test_shape_hint_only_for_shape_errors(registry):
    # jax.pure_callback without vmap_method raises NotImplementedError under jax.vmap,
    # whose message mentions dimensions but not a shape that fails the signature.
    @vc.rule("(n)->(n)", registry=registry, reference=None)
    def host_cube(x):
        return jax.pure_callback(lambda a: np.asarray(a) ** 3, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    @host_cube.vjp
    def _(x, out, g):
        return (3 * x**2 * g,)

    report = vc.check_report(host_cube, properties=["transforms"], dtypes=["float32"], max_examples=5)
    result = report.results[0]
    assert result.outcome == "error"
    assert "vmap_method" in result.message
    assert "The shapes may not match the signature" not in result.message
