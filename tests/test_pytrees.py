"""Rules whose arguments are pytrees: declaring, calling, checking, and the reports."""

import dataclasses
import json
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vjpcheck as vc
from vjpcheck._cli import main

AFFINE = ({"W": "(h,d)", "b": "(h)"}, "(d)")


def check_one(rule, prop, **options):
    # float32 alone and sides up to 3 keep compilation, and so the suite, fast.
    options.setdefault("dtypes", ["float32"])
    options.setdefault("max_side", 3)
    return vc.check(rule, properties=[prop], **options)


def failure_text(rule, prop, **options):
    with pytest.raises(vc.RuleMismatch) as info:
        check_one(rule, prop, **options)
    return str(info.value)


def make_affine(registry, backward, name="affine", **options):
    @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry, name=name, **options)
    def affine(params, x):
        return params["W"] @ x + params["b"]

    @affine.vjp
    def _(params, x, out, g):
        return backward(params, x, g)

    return affine


def correct_affine_backward(params, x, g):
    return {"W": jnp.outer(g, x), "b": g}, params["W"].T @ g


def reshaped_weight_backward(params, x, g):
    return {"W": jnp.outer(x, g).reshape(params["W"].shape), "b": g}, params["W"].T @ g


def transposed_weight_backward(params, x, g):
    return {"W": jnp.outer(x, g), "b": g}, params["W"].T @ g


def doubled_bias_backward(params, x, g):
    return {"W": jnp.outer(g, x), "b": 2 * g}, params["W"].T @ g


def missing_bias_backward(params, x, g):
    return {"W": jnp.outer(g, x)}, params["W"].T @ g


def extra_key_backward(params, x, g):
    return {"W": jnp.outer(g, x), "b": g, "c": g}, params["W"].T @ g


@pytest.fixture
def params_and_x():
    params = {"W": jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]]), "b": jnp.array([0.1, -0.2])}
    return params, jnp.array([0.5, -1.0, 2.0])


# ----------------------------------------------------------------------------------
# Declaring and calling


def test_leaves_named_by_key_path(registry):
    affine = make_affine(registry, correct_affine_backward)
    assert affine.arg_names == ("params['W']", "params['b']", "x")
    assert affine.tree_names == ("params", "x")
    assert affine.signature.text == "(h,d),(h),(d)->(h)"
    assert affine.arg_names[affine.data_index] == "x"


def test_call_returns_op_value(registry, params_and_x):
    affine = make_affine(registry, correct_affine_backward)
    params, x = params_and_x
    np.testing.assert_allclose(affine(params, x), params["W"] @ x + params["b"])
    np.testing.assert_allclose(affine(params=params, x=x), params["W"] @ x + params["b"])


def test_jax_grad_uses_hand_written_rule(registry, params_and_x):
    # The bias cotangent is deliberately not the derivative, to show that JAX uses it.
    def backward(params, x, g):
        return {"W": jnp.outer(g, x), "b": 3 * g}, params["W"].T @ g

    affine = make_affine(registry, backward)
    params, x = params_and_x
    grad = jax.grad(lambda p: jnp.sum(affine(p, x)))(params)
    assert isinstance(grad, dict)
    assert sorted(grad) == ["W", "b"]
    np.testing.assert_allclose(grad["W"], np.outer(np.ones(2), x))
    np.testing.assert_allclose(grad["b"], np.full(2, 3.0))


def test_jit_and_vjp_through_rule(registry, params_and_x):
    affine = make_affine(registry, correct_affine_backward)
    params, x = params_and_x
    np.testing.assert_allclose(jax.jit(affine)(params, x), params["W"] @ x + params["b"], rtol=1e-6)
    _, pullback = jax.vjp(jax.jit(affine), params, x)
    g = jnp.array([1.0, -2.0])
    grad_params, grad_x = pullback(g)
    expected_params, expected_x = correct_affine_backward(params, x, g)
    np.testing.assert_allclose(grad_params["W"], expected_params["W"])
    np.testing.assert_allclose(grad_params["b"], expected_params["b"])
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-6)


def test_call_with_wrong_structure_names_argument(registry, params_and_x):
    affine = make_affine(registry, correct_affine_backward)
    params, x = params_and_x
    with pytest.raises(TypeError) as info:
        affine({"W": params["W"]}, x)
    assert "argument 'params' has the structure" in str(info.value)
    assert "tree_signature declares PyTreeDef({'W': *, 'b': *})" in str(info.value)


def test_grad_with_wrong_structure_names_key_path(registry, params_and_x):
    affine = make_affine(registry, missing_bias_backward)
    params, x = params_and_x
    with pytest.raises(vc.RuleMismatch) as info:
        jax.grad(lambda p: jnp.sum(affine(p, x)))(params)
    assert "cotangent for 'params' (input 0) lacks params['b']" in str(info.value)


def test_residual_form(registry, params_and_x):
    @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry)
    def affine(params, x):
        return params["W"] @ x + params["b"]

    @affine.fwd
    def _(params, x):
        return affine(params, x), (params["W"], x)

    @affine.bwd
    def _(residuals, g):
        W, x = residuals
        return {"W": jnp.outer(g, x), "b": g}, W.T @ g

    params, x = params_and_x
    grad = jax.grad(lambda p: jnp.sum(affine(p, x)))(params)
    np.testing.assert_allclose(grad["b"], np.ones(2))
    vc.check(affine, dtypes=["float32"], max_side=3, max_examples=10,
             properties=["structure", "matches_autodiff", "adjoint"])


# ----------------------------------------------------------------------------------
# Options by key path


def test_specs_by_key_path_reach_the_leaf(registry):
    scales = []

    @vc.rule(
        vc.tree_signature({"scale": "(n)", "shift": "(n)"}, "(n)", output="(n)"),
        specs={"params['scale']": vc.positive(0.5, 2.0)}, data="x", registry=registry,
    )
    def scaled(params, x):
        jax.debug.callback(lambda value: scales.append(np.asarray(value)), params["scale"])
        return params["scale"] * x + params["shift"]

    @scaled.vjp
    def _(params, x, out, g):
        return {"scale": g * x, "shift": g}, params["scale"] * g

    check_one(scaled, "matches_autodiff", max_examples=10)
    assert scales
    # The truth also runs on inputs moved by 4 float32 epsilons times their largest
    # element, to measure its sensitivity, so values may leave the range by that much.
    assert min(float(np.min(s)) for s in scales) >= 0.5 - 1e-5
    assert max(float(np.max(s)) for s in scales) <= 2.0 + 1e-5


def test_argument_spec_and_leaf_override(registry):
    affine = make_affine(
        registry, correct_affine_backward,
        specs={"params": vc.positive(1.0, 2.0), "params['b']": vc.real(-1.0, -0.5)},
    )
    assert affine.specs == (vc.positive(1.0, 2.0), vc.real(-1.0, -0.5), vc.real())


def test_unknown_spec_lists_leaves(registry):
    with pytest.raises(vc.InvalidSpec) as info:
        make_affine(registry, correct_affine_backward, specs={"params['c']": vc.positive()})
    message = str(info.value)
    assert "specs name [\"params['c']\"], which are neither leaves nor arguments" in message
    assert "the leaves are [\"params['W']\", \"params['b']\", 'x']" in message


def test_data_naming_several_leaves_rejected(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), data="params", registry=registry)
        def affine(params, x):
            return params["W"] @ x + params["b"]

    assert "data='params' names 2 leaves" in str(info.value)
    assert "[\"params['W']\", \"params['b']\"]" in str(info.value)


def test_data_naming_unknown_leaf_rejected(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), data="params['X']", registry=registry)
        def affine(params, x):
            return params["W"] @ x + params["b"]

    assert "data=\"params['X']\" is neither a leaf nor an argument" in str(info.value)
    assert "the arguments are ['params', 'x']" in str(info.value)


def test_kinks_by_argument_name(registry):
    @vc.rule(vc.tree_signature(("(n)", "(n)"), output="(n)"), kinks={"pair": [0.0]}, registry=registry)
    def relu_sum(pair):
        return jnp.maximum(pair[0], 0.0) + jnp.maximum(pair[1], 0.0)

    assert relu_sum.kinks == {0: (0.0,), 1: (0.0,)}


def test_static_spec_rejected(registry):
    from hypothesis import strategies as st

    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule(vc.tree_signature("(n)", output="(n)"), specs={"x": vc.static(st.just(1))}, registry=registry)
        def op(x):
            return x

    assert "rules declared with tree_signature take no static arguments" in str(info.value)


# ----------------------------------------------------------------------------------
# Properties


def test_correct_rule_passes_check(registry):
    affine = make_affine(registry, correct_affine_backward)
    report = vc.check(affine, dtypes=["float32"], max_side=3, max_examples=10)
    outcomes = {r.property: r.outcome for r in report.results}
    for prop in ("structure", "matches_autodiff", "adjoint", "flattening", "composition", "linearity", "transforms"):
        assert outcomes[prop] == "passed", prop


def test_matches_autodiff_names_weight_leaf(registry):
    text = failure_text(make_affine(registry, reshaped_weight_backward), "matches_autodiff")
    assert "failed property 'matches_autodiff'" in text
    assert "Cotangent for \"params['W']\" (input 0): " in text
    assert "Cotangent for \"params['b']\"" not in text
    assert "Inputs: params['W']: f32[" in text


def test_matches_autodiff_names_bias_leaf(registry):
    text = failure_text(make_affine(registry, doubled_bias_backward), "matches_autodiff")
    assert "Cotangent for \"params['b']\" (input 0): " in text
    assert "Cotangent for \"params['W']\"" not in text
    assert "Cotangent for 'x'" not in text


def test_adjoint_blames_bias_leaf(registry):
    text = failure_text(make_affine(registry, doubled_bias_backward), "adjoint")
    assert "failed property 'adjoint'" in text
    assert "Checked one input at a time, the identity fails for \"params['b']\"." in text


def test_structure_names_missing_key(registry):
    text = failure_text(make_affine(registry, missing_bias_backward), "structure")
    assert "failed property 'structure'" in text
    assert (
        "cotangent for 'params' (input 0) lacks params['b']; expected a dict with keys "
        "['W', 'b'], the structure of the input." in text
    )


def test_structure_names_extra_key(registry):
    text = failure_text(make_affine(registry, extra_key_backward), "structure")
    assert "cotangent for 'params' (input 0) has params['c'], which the input does not have" in text


def test_structure_names_leaf_of_wrong_shape(registry):
    text = failure_text(make_affine(registry, transposed_weight_backward), "structure")
    assert "cotangent for \"params['W']\" (input 0) is f32[" in text
    assert "It has the transposed shape" in text


def test_structure_names_list_for_tuple(registry):
    @vc.rule(vc.tree_signature(("(n)", "(n)"), output="(n)"), registry=registry)
    def product(pair):
        return pair[0] * pair[1]

    @product.vjp
    def _(pair, out, g):
        return ([g * pair[1], g * pair[0]],)

    text = failure_text(product, "structure")
    assert "cotangent for 'pair' (input 0) is a list of 2; expected a tuple of 2, the structure of the input." in text


@pytest.mark.parametrize(
    ("layer_cotangent", "expected"),
    [
        (lambda g: (g,), "cotangent for \"params['layer']\" (input 0) is a tuple of 1; expected a dict with keys ['W']"),
        (lambda g: {"W": (g,)}, "cotangent for \"params['layer']['W']\" (input 0) is a tuple of 1; expected f32["),
    ],
    ids=["node", "leaf"],
)
def test_structure_names_nested_key_path(registry, layer_cotangent, expected):
    @vc.rule(vc.tree_signature({"layer": {"W": "(n)"}, "b": "(n)"}, output="(n)"), registry=registry)
    def op(params):
        return params["layer"]["W"] * params["b"]

    @op.vjp
    def _(params, out, g):
        return ({"layer": layer_cotangent(g * params["b"]), "b": g * params["layer"]["W"]},)

    assert expected in failure_text(op, "structure")


def test_integer_leaf_takes_none_or_float0(registry):
    signature = vc.tree_signature({"p": "(n)", "label": "()"}, output="()")
    specs = {"batch['p']": vc.positive(0.01, 1.0), "batch['label']": vc.index("n")}

    @vc.rule(signature, specs=specs, registry=registry, name="nll_none")
    def nll_none(batch):
        return -jnp.log(batch["p"][batch["label"]])

    @nll_none.vjp
    def _(batch, out, g):
        p, label = batch["p"], batch["label"]
        return ({"p": -g * jax.nn.one_hot(label, p.shape[0], dtype=p.dtype) / p[label], "label": None},)

    @vc.rule(signature, specs=specs, registry=registry, name="nll_float0")
    def nll_float0(batch):
        return -jnp.log(batch["p"][batch["label"]])

    @nll_float0.vjp
    def _(batch, out, g):
        p, label = batch["p"], batch["label"]
        zero = np.zeros(np.shape(label), dtype=jax.dtypes.float0)
        return ({"p": -g * jax.nn.one_hot(label, p.shape[0], dtype=p.dtype) / p[label], "label": zero},)

    for rule in (nll_none, nll_float0):
        vc.check(rule, dtypes=["float32"], max_side=3, max_examples=10, properties=["structure", "matches_autodiff"])


def test_integer_argument_takes_none(registry):
    @vc.rule(
        vc.tree_signature("(n)", {"first": "()", "second": "()"}, output="()"),
        specs={"labels": vc.index("n")}, registry=registry,
    )
    def pick(p, labels):
        return p[labels["first"]] + 2 * p[labels["second"]]

    @pick.vjp
    def _(p, labels, out, g):
        one_hot = lambda i: jax.nn.one_hot(i, p.shape[0], dtype=p.dtype)
        return g * (one_hot(labels["first"]) + 2 * one_hot(labels["second"])), None

    assert [spec.kind for spec in pick.specs] == ["float", "index", "index"]
    vc.check(pick, dtypes=["float32"], max_side=3, max_examples=10, properties=["structure", "matches_autodiff"])


def test_float_cotangent_for_integer_leaf_fails_structure(registry):
    @vc.rule(
        vc.tree_signature({"p": "(n)", "label": "()"}, output="()"),
        specs={"batch['label']": vc.index("n")}, registry=registry,
    )
    def pick(batch):
        return batch["p"][batch["label"]]

    @pick.vjp
    def _(batch, out, g):
        p, label = batch["p"], batch["label"]
        return ({"p": g * jax.nn.one_hot(label, p.shape[0], dtype=p.dtype), "label": jnp.zeros(())},)

    text = failure_text(pick, "structure")
    assert "cotangent for \"batch['label']\" (input 0) is f32[]; an integer input takes None or a float0" in text


# ----------------------------------------------------------------------------------
# Registered pytree nodes


class Params(NamedTuple):
    W: jax.Array
    b: jax.Array


@dataclasses.dataclass
class Layer:
    W: jax.Array
    b: jax.Array


jax.tree_util.register_dataclass(Layer, data_fields=["W", "b"], meta_fields=[])


@pytest.mark.parametrize("node", [Params, Layer], ids=["namedtuple", "dataclass"])
def test_registered_node_input(registry, node):
    @vc.rule(vc.tree_signature(node(W="(h,d)", b="(h)"), "(d)", output="(h)"), data="x", registry=registry)
    def affine(p, x):
        return p.W @ x + p.b

    @affine.vjp
    def _(p, x, out, g):
        return node(W=jnp.outer(g, x), b=g), p.W.T @ g

    assert affine.arg_names == ("p.W", "p.b", "x")
    p, x = node(W=jnp.ones((2, 3)), b=jnp.zeros(2)), jnp.arange(3.0)
    grad = jax.grad(lambda p: jnp.sum(affine(p, x)))(p)
    assert isinstance(grad, node)
    np.testing.assert_allclose(grad.W, np.outer(np.ones(2), x))
    vc.check(affine, dtypes=["float32"], max_side=3, max_examples=10, properties=["structure", "matches_autodiff"])


@pytest.mark.parametrize("node", [Params, Layer], ids=["namedtuple", "dataclass"])
def test_registered_node_tuple_cotangent_fails_structure(registry, node):
    @vc.rule(vc.tree_signature(node(W="(h,d)", b="(h)"), "(d)", output="(h)"), data="x", registry=registry)
    def affine(p, x):
        return p.W @ x + p.b

    @affine.vjp
    def _(p, x, out, g):
        return (jnp.outer(g, x), g), p.W.T @ g

    text = failure_text(affine, "structure")
    assert f"cotangent for 'p' (input 0) is a tuple of 2; expected a {node.__name__} with .W, .b" in text


# ----------------------------------------------------------------------------------
# Existing custom_vjp functions


def make_custom_affine(bias_factor):
    @jax.custom_vjp
    def affine(params, x):
        return params["W"] @ x + params["b"]

    def fwd(params, x):
        return affine(params, x), (params["W"], x)

    def bwd(residuals, g):
        W, x = residuals
        return {"W": jnp.outer(g, x), "b": bias_factor * g}, W.T @ g

    affine.defvjp(fwd, bwd)
    return affine


def test_register_pytree_custom_vjp(registry, params_and_x):
    affine = make_custom_affine(1.0)
    rule = vc.register(affine, vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry)
    assert rule.kind == "custom_vjp"
    params, x = params_and_x
    np.testing.assert_allclose(rule(params, x), affine(params, x))
    vc.check(rule, dtypes=["float32"], max_side=3, max_examples=10, properties=["structure", "matches_autodiff", "adjoint"])


def test_register_wrong_pytree_custom_vjp_names_leaf(registry):
    rule = vc.register(make_custom_affine(2.0), vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry)
    text = failure_text(rule, "matches_autodiff")
    assert "Cotangent for \"params['b']\" (input 0): " in text


def test_rule_stacked_on_pytree_custom_vjp(registry, params_and_x):
    @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry)
    @jax.custom_vjp
    def affine(params, x):
        return params["W"] @ x + params["b"]

    assert "has no rule yet" in affine.missing

    def fwd(params, x):
        return affine(params, x), (params["W"], x)

    def bwd(residuals, g):
        W, x = residuals
        return {"W": jnp.outer(g, x), "b": g}, W.T @ g

    affine.defvjp(fwd, bwd)
    assert affine.missing is None
    params, x = params_and_x
    grad = jax.grad(lambda p: jnp.sum(affine(p, x)))(params)
    np.testing.assert_allclose(grad["b"], np.ones(2))


def test_pytree_output_rejected(registry):
    @vc.rule(vc.tree_signature(("(n)", "(n)"), output="(n)"), registry=registry)
    def both(pair):
        return {"sum": pair[0] + pair[1], "product": pair[0] * pair[1]}

    @both.vjp
    def _(pair, out, g):
        return ((g, g),)

    with pytest.raises(vc.InvalidSpec) as info:
        check_one(both, "structure", max_examples=5)
    message = str(info.value)
    assert "the op returned a dict with keys ['product', 'sum'], but vjpcheck checks ops that return a single array" in message
    assert "Return one array" in message


# ----------------------------------------------------------------------------------
# Chains


def test_chain_names_link_leaves(registry):
    affine = make_affine(registry, correct_affine_backward)

    @vc.rule("(n)->(n)", kinks=[0.0], registry=registry)
    def relu(x):
        return jnp.maximum(x, 0.0)

    @relu.vjp
    def _(x, out, g):
        return (jnp.where(x > 0, g, 0.0),)

    chain = vc.chain(affine, relu, registry=registry)
    assert chain.arg_names == ("x", "affine[0].params['W']", "affine[0].params['b']")
    vc.check(chain, dtypes=["float32"], max_side=3, max_examples=10, properties=["structure", "matches_autodiff"])


def test_chain_failure_names_link_leaf(registry):
    affine = make_affine(registry, doubled_bias_backward)

    @vc.rule("(n)->(n)", registry=registry)
    def double(x):
        return 2 * x

    @double.vjp
    def _(x, out, g):
        return (2 * g,)

    chain = vc.chain(affine, double, registry=registry)
    text = failure_text(chain, "matches_autodiff")
    assert "Cotangent for \"affine[0].params['b']\" (input 2): " in text


# ----------------------------------------------------------------------------------
# Errors raised by the rule, and the command line


def error_message(rule, prop="matches_autodiff"):
    result = vc.check_report(rule, properties=[prop], dtypes=["float32"]).results[0]
    assert result.outcome == "error", result.message
    return result.message


def test_error_in_backward_rule_is_blamed_on_it(registry):
    def backward(params, x, g):
        return {"W": jnp.outer(g, x), "b": g + undefined_name}, params["W"].T @ g  # noqa: F821

    message = error_message(make_affine(registry, backward))
    assert "its backward rule raised an error" in message
    assert "NameError: name 'undefined_name' is not defined" in message
    assert "Draw 2 (params['W']):" in message


def test_custom_vjp_bwd_error_blamed(registry):
    @jax.custom_vjp
    def affine(params, x):
        return params["W"] @ x + params["b"]

    def bwd(residuals, g):
        return undefined_name  # noqa: F821

    affine.defvjp(lambda params, x: (affine(params, x), (params, x)), bwd)
    rule = vc.register(affine, vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry)
    assert "its backward rule raised an error" in error_message(rule)


def test_error_in_op_is_blamed_on_op(registry):
    @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), data="x", registry=registry)
    def affine(params, x):
        return params["W"] @ x + params["b"] + undefined_name  # noqa: F821

    affine.vjp(lambda params, x, out, g: correct_affine_backward(params, x, g))
    assert "its op raised an error" in error_message(affine)


def test_error_in_reference_is_blamed_on_it(registry):
    def reference(params, x):
        return np.asarray(params["W"]) @ x

    affine = make_affine(registry, correct_affine_backward, reference=reference)
    assert "its reference raised an error" in error_message(affine)


TREE_MODULE = """
import jax.numpy as jnp
import vjpcheck as vc

@vc.rule(vc.tree_signature({"W": "(h,d)", "b": "(h)"}, "(d)", output="(h)"), data="x")
def cli_tree_affine(params, x):
    return params["W"] @ x + params["b"]

@cli_tree_affine.vjp
def _(params, x, out, g):
    return {"W": jnp.outer(g, x), "b": 2 * g}, params["W"].T @ g
"""


def test_command_reports_leaf_in_json(tmp_path, capsys, forget_new_rules):
    path = tmp_path / "cli_tree.py"
    path.write_text(textwrap.dedent(TREE_MODULE))
    output = tmp_path / "out.json"
    code = main([
        "check", str(path), "--max-examples", "10", "--property", "matches_autodiff",
        "--max-side", "3", "--dtype", "float32", "--json", str(output),
    ])
    capsys.readouterr()
    assert code == 1
    record = json.loads(output.read_text())["results"][0]
    assert record["rule"] == "cli_tree_affine"
    assert record["outcome"] == "failed"
    assert "Cotangent for \"params['b']\" (input 0): " in record["message"]


# ----------------------------------------------------------------------------------
# Invalid tree signatures


@pytest.mark.parametrize(
    ("inputs", "output", "expected"),
    [
        ((), "(n)", "tree_signature() got no inputs"),
        (({},), "(n)", "input 0 is {}, a pytree with no leaves"),
        (("(n)", ()), "(n)", "input 1 is (), a pytree with no leaves"),
        (({"W": (3, 4)},), "(n)", "input 0 at ['W'][0] is 3 of type int; each leaf must be a core shape string"),
        (({"W": "(h,d"},), "(h)", "input 0 at ['W'] is '(h,d', which is not a core shape"),
        (("(h,d),(d)->(h)",), "(h)", "input 0 is '(h,d),(d)->(h)', a whole signature"),
        (("(n)",), {"a": "(n)", "b": "(n)"}, "output is a pytree, but vjpcheck checks ops that return a single array"),
        (("(n)",), "n", "output='n'): output is not a core shape"),
        (("(n)",), 3, "output must be a core shape string"),
        (("(n)",), "(m)", "uses dimension 'm' in the output but in no input"),
    ],
    ids=["none", "empty-dict", "empty-tuple", "int-leaf", "bad-group", "whole-signature", "tree-output", "bare-output", "int-output", "unknown-dim"],
)
def test_invalid_tree_signature_messages(inputs, output, expected):
    with pytest.raises(vc.InvalidSpec) as info:
        vc.tree_signature(*inputs, output=output)
    assert expected in str(info.value)


def test_argument_count_mismatch_message(registry):
    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule(vc.tree_signature(*AFFINE, output="(h)"), registry=registry)
        def affine(params):
            return params["W"]

    assert "declares 2 input(s), but the function takes (params)" in str(info.value)


def test_nondiff_argnums_rejected_for_tree_rule(registry):
    import functools

    @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
    def scaled(params, slope):
        return slope * params["w"]

    scaled.defvjp(lambda p, s: (s * p["w"], None), lambda s, res, g: ({"w": s * g},))
    with pytest.raises(vc.InvalidSpec) as info:
        vc.register(scaled, vc.tree_signature({"w": "(n)"}, output="(n)"), registry=registry)
    assert "it has nondiff_argnums=(1,), but rules declared with tree_signature take no static arguments" in str(info.value)
    assert "functools.partial" in str(info.value)


def test_static_spec_rejected_before_parameter_count(registry):
    from hypothesis import strategies as st

    with pytest.raises(vc.InvalidSpec) as info:

        @vc.rule(vc.tree_signature({"w": "(n)"}, output="(n)"), specs={"slope": vc.static(st.just(0.1))}, registry=registry)
        def scaled(params, slope):
            return slope * params["w"]

    assert "specs give ['slope'] a vjpcheck.static(...) spec" in str(info.value)
