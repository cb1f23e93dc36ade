"""Domain specs: away_from, unit_vector, spd and probability."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

import vjpcheck as vc
from vjpcheck import InvalidSpec
from vjpcheck._strategies import float_arrays

FAST = settings(max_examples=30, deadline=None)
# With this many bfloat16 draws, some matrices would lose definiteness if rounding
# them did not repair the diagonal.
MANY = settings(max_examples=300, deadline=None)
FLOAT64 = np.dtype(np.float64)
DTYPES = [np.dtype(np.float32), FLOAT64, np.dtype(np.float16), np.dtype(jnp.bfloat16)]
DTYPE_IDS = [dtype.name for dtype in DTYPES]
CHECK = dict(properties=["matches_autodiff", "adjoint"], dtypes=["float32"], max_examples=15)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def declare(registry, signature, spec, fn=lambda x: x):
    """Declare a rule whose one argument ``x`` has ``spec``."""
    return vc.rule(signature, specs={"x": spec}, registry=registry)(fn)


def declaration_error(registry, signature, spec):
    with pytest.raises(InvalidSpec) as raised:
        declare(registry, signature, spec)
    return str(raised.value)


def constructor_error(make, *args, **kwargs):
    with pytest.raises(InvalidSpec) as raised:
        make(*args, **kwargs)
    return str(raised.value)


# ----------------------------------------------------------------------------------
# away_from


@FAST
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(data=st.data())
def test_away_from_draws_keep_margin(dtype, data):
    spec = vc.away_from([0.0, 3.0], min_value=-4.0, max_value=4.0, margin=0.5)

    array = data.draw(float_arrays(spec, (6,), dtype)).astype(np.float64)

    assert np.all(np.abs(array - 0.0) >= 0.5)
    assert np.all(np.abs(array - 3.0) >= 0.5)
    assert np.all(array >= -4.0)
    assert np.all(array <= 4.0)


def test_away_from_shrinks_to_margin():
    spec = vc.away_from([0.0])

    array = find(float_arrays(spec, (3,), np.dtype(np.float32)), lambda array: True, settings=FAST)

    np.testing.assert_array_equal(array, np.full(3, np.float32(0.2)))


def test_away_from_default_margin_from_range():
    assert vc.away_from([0.0]).margin == pytest.approx(0.2)
    assert vc.away_from(1.0, min_value=0.0, max_value=5.0).margin == pytest.approx(0.05)


def test_away_from_moves_to_nearer_edge():
    spec = vc.away_from([0.0], margin=0.5)

    moved = spec.project(np.array([-0.4, -0.1, 0.0, 0.3, 0.7]), FLOAT64)

    np.testing.assert_array_equal(moved, [-0.5, -0.5, 0.5, 0.5, 0.7])


def test_away_from_stays_inside_range():
    spec = vc.away_from([9.9], margin=0.5)

    moved = spec.project(np.array([9.95, 10.0, 9.5]), FLOAT64)

    np.testing.assert_array_equal(moved, [9.4, 9.4, 9.4])


def test_away_from_merges_overlapping_neighbourhoods():
    spec = vc.away_from([0.0, 0.3], margin=0.2)

    moved = spec.project(np.array([0.1, 0.2, 0.25]), FLOAT64)

    assert spec.excluded() == [(-0.2, pytest.approx(0.5))]
    np.testing.assert_allclose(moved, [-0.2, 0.5, 0.5])


def test_away_from_rounds_edges_outwards():
    # float32(0.7) is below 0.7, so rounding to nearest would land inside the margin.
    spec = vc.away_from([0.0], margin=0.7)

    moved = spec.project(np.array([0.01, -0.01]), np.dtype(np.float32)).astype(np.float64)

    assert moved[0] >= 0.7
    assert moved[1] <= -0.7


@pytest.mark.parametrize("points", [[math.inf], [0.0, math.nan], [], "0", [True], None])
def test_away_from_rejects_bad_points(points):
    message = constructor_error(vc.away_from, points)

    assert f"away_from(points={points!r})" in message
    assert "points must be a non-empty list of finite numbers, such as [0.0]" in message


@pytest.mark.parametrize("margin", [-0.1, math.nan, math.inf, "1"])
def test_away_from_rejects_bad_margin(margin):
    message = constructor_error(vc.away_from, [0.0], margin=margin)

    assert f"away_from(margin={margin!r})" in message
    assert "margin must be a finite number >= 0" in message


def test_away_from_rejects_covered_range():
    message = constructor_error(vc.away_from, [0.0], min_value=-1.0, max_value=1.0, margin=2.0)

    assert "away_from(points=[0.0], min_value=-1.0, max_value=1.0, margin=2.0)" in message
    assert "every value in [min_value, max_value] lies within margin of a point" in message
    assert "Lower margin or widen [min_value, max_value]" in message


def test_away_from_rejects_bad_bounds():
    message = constructor_error(vc.away_from, [0.0], min_value=1.0, max_value=-1.0)

    assert "away_from(min_value=1.0, max_value=-1.0): min_value must be less than max_value" in message


def test_away_from_widened_scales_range():
    spec = vc.away_from([1.0], margin=0.5).widened(10.0)

    assert spec == vc.away_from([1.0], min_value=-100.0, max_value=100.0, margin=0.05)


# ----------------------------------------------------------------------------------
# unit_vector


@FAST
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(data=st.data())
def test_unit_vector_draws_unit_length(dtype, data):
    array = data.draw(float_arrays(vc.unit_vector(), (2, 3), dtype)).astype(np.float64)

    lengths = np.linalg.norm(array, axis=-1)

    np.testing.assert_allclose(lengths, 1.0, rtol=0, atol=2 * eps(dtype))


@FAST
@given(data=st.data())
def test_unit_vector_along_first_axis(data):
    array = data.draw(float_arrays(vc.unit_vector(axis=0), (3, 2), FLOAT64))

    np.testing.assert_allclose(np.linalg.norm(array, axis=0), 1.0, rtol=1e-12)


def test_unit_vector_replaces_zero_vector():
    spec = vc.unit_vector()

    unit = spec.project(np.array([[0.0, 0.0, 0.0], [0.0, 3.0, 4.0]]), FLOAT64)

    np.testing.assert_array_equal(unit, [[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])


def test_unit_vector_replaces_zero_along_axis():
    unit = vc.unit_vector(axis=0).project(np.zeros((3, 2)), FLOAT64)

    np.testing.assert_array_equal(unit, [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])


def test_unit_vector_shrinks_to_basis_vector():
    array = find(float_arrays(vc.unit_vector(), (3,), np.dtype(np.float32)), lambda array: True, settings=FAST)

    np.testing.assert_array_equal(array, [1.0, 0.0, 0.0])


def test_unit_vector_rejects_scalar_argument(registry):
    message = declaration_error(registry, "()->()", vc.unit_vector())

    assert "specs['x'] = unit_vector(axis=-1)" in message
    assert "its core shape is (), a scalar" in message
    assert "Give the argument a dimension in the signature, as in '(n)'" in message


def test_unit_vector_rejects_missing_axis(registry):
    message = declaration_error(registry, "(n)->(n)", vc.unit_vector(axis=1))

    assert "specs['x'] = unit_vector(axis=1) normalises along axis 1" in message
    assert "which core shape (n) does not have. Use an axis from -1 to 0" in message


@pytest.mark.parametrize("axis", [1.5, "last", True])
def test_unit_vector_rejects_bad_axis(axis):
    message = constructor_error(vc.unit_vector, axis)

    assert f"unit_vector(axis={axis!r}): axis must be an integer" in message


def test_unit_vector_accepts_matrix_argument(registry):
    rule = declare(registry, "(m,n)->(m,n)", vc.unit_vector(axis=0))

    assert rule.specs[0] == vc.unit_vector(axis=0)


# ----------------------------------------------------------------------------------
# spd


@FAST
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(data=st.data())
def test_spd_draws_symmetric_definite(dtype, data):
    spec = vc.spd()

    matrices = data.draw(float_arrays(spec, (2, 4, 4), dtype)).astype(np.float64)

    np.testing.assert_array_equal(matrices, np.swapaxes(matrices, -1, -2))
    assert np.linalg.eigvalsh(matrices).min() >= spec.min_eigenvalue - 1e-12
    assert np.abs(matrices).max() <= spec.max_value * (1 + 4 * 4 * eps(dtype))


@MANY
@given(data=st.data())
def test_spd_bfloat16_keeps_min_eigenvalue(data):
    spec = vc.spd(min_eigenvalue=0.01)

    matrix = data.draw(float_arrays(spec, (4, 4), np.dtype(jnp.bfloat16))).astype(np.float64)

    assert np.linalg.eigvalsh(matrix).min() >= 0.01 - 1e-12


def test_spd_shrinks_to_scaled_identity():
    spec = vc.spd(min_eigenvalue=0.5)

    matrix = find(float_arrays(spec, (3, 3), FLOAT64), lambda array: True, settings=FAST)

    np.testing.assert_array_equal(matrix, 0.5 * np.eye(3))


@pytest.mark.parametrize("signature", ["(n)->()", "()->()"])
def test_spd_rejects_low_rank(registry, signature):
    message = declaration_error(registry, signature, vc.spd())
    core = signature.split("->")[0]

    assert "specs['x'] = spd() needs a square matrix in its last two core dimensions" in message
    assert f"but its core shape is {core}" in message
    assert "as in '(n,n)'" in message


@pytest.mark.parametrize("signature", ["(m,n)->()", "(2,3)->()", "(n,n,m)->()"])
def test_spd_rejects_non_square(registry, signature):
    message = declaration_error(registry, signature, vc.spd())
    core = signature.split("->")[0]

    assert f"specs['x'] = spd() needs a square matrix" in message
    assert f"but its core shape is {core}" in message
    assert "Write those two dimensions as one name repeated, as in '(n,n)'" in message


@pytest.mark.parametrize("signature", ["(n,n)->()", "(3,3)->()", "(b,n,n)->(b)"])
def test_spd_accepts_square_core(registry, signature):
    rule = declare(registry, signature, vc.spd())

    assert rule.specs[0] == vc.spd()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"min_eigenvalue": 0.0}, "spd(min_eigenvalue=0.0): min_eigenvalue must be greater than 0"),
        ({"min_eigenvalue": math.nan}, "spd(min_eigenvalue=nan): min_eigenvalue must be a finite number"),
        ({"max_value": math.inf}, "spd(max_value=inf): max_value must be a finite number"),
        (
            {"min_eigenvalue": 2.0, "max_value": 1.0},
            "spd(min_eigenvalue=2.0, max_value=1.0): max_value must be greater than min_eigenvalue",
        ),
    ],
)
def test_spd_rejects_bad_bounds(kwargs, expected):
    assert expected in constructor_error(vc.spd, **kwargs)


def test_spd_widened_scales_bounds():
    assert vc.spd(0.1, 10.0).widened(10.0) == vc.spd(0.01, 100.0)


# ----------------------------------------------------------------------------------
# probability


@FAST
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(data=st.data())
def test_probability_draws_sum_to_one(dtype, data):
    spec = vc.probability()

    array = data.draw(float_arrays(spec, (2, 4), dtype)).astype(np.float64)

    np.testing.assert_allclose(array.sum(axis=-1), 1.0, rtol=0, atol=eps(dtype))
    assert np.all(array >= spec.min_value)


@FAST
@given(data=st.data())
def test_probability_along_first_axis(data):
    spec = vc.probability(axis=0, min_value=0.05)

    array = data.draw(float_arrays(spec, (3, 2), FLOAT64))

    np.testing.assert_allclose(array.sum(axis=0), 1.0, rtol=0, atol=1e-15)
    assert np.all(array >= 0.05)


def test_probability_shrinks_to_uniform():
    array = find(float_arrays(vc.probability(), (4,), np.dtype(np.float32)), lambda array: True, settings=FAST)

    np.testing.assert_array_equal(array, [0.25, 0.25, 0.25, 0.25])


def test_probability_rejects_scalar_argument(registry):
    message = declaration_error(registry, "()->()", vc.probability())

    assert "specs['x'] = probability(axis=-1, min_value=0.001)" in message
    assert "its core shape is (), a scalar" in message
    assert "as in '(n)'" in message


def test_probability_rejects_small_fixed_size(registry):
    message = declaration_error(registry, "(4)->()", vc.probability(min_value=0.3))

    assert "specs['x'] = probability(axis=-1, min_value=0.3)" in message
    assert "4 probabilities of at least 0.3 sum to more than 1" in message
    assert "Lower min_value below 1/4" in message


@FAST
@given(data=st.data())
def test_probability_rejects_large_drawn_size(data):
    spec = vc.probability(min_value=0.3)

    with pytest.raises(InvalidSpec) as raised:
        data.draw(float_arrays(spec, (4,), FLOAT64))

    assert "4 probabilities of at least 0.3 sum to more than 1" in str(raised.value)


@pytest.mark.parametrize("min_value", [0.0, 1.0, -0.1, math.nan, "0.1"])
def test_probability_rejects_bad_min_value(min_value):
    message = constructor_error(vc.probability, min_value=min_value)

    assert f"probability(min_value={min_value!r})" in message
    assert "min_value must be a number greater than 0 and less than 1" in message


def test_probability_rejects_bad_axis():
    message = constructor_error(vc.probability, axis="last")

    assert "probability(axis='last'): axis must be an integer" in message


# ----------------------------------------------------------------------------------
# accepts and largest_magnitude


DOMAIN_SPECS = [vc.away_from([0.0]), vc.unit_vector(), vc.spd(), vc.probability()]


@pytest.mark.parametrize("produced", DOMAIN_SPECS, ids=repr)
def test_real_accepts_domain_specs(produced):
    assert vc.real().accepts(produced)


def test_positive_accepts_probability_only():
    assert vc.positive().accepts(vc.probability())
    assert not vc.positive().accepts(vc.unit_vector())
    assert not vc.positive().accepts(vc.spd())
    assert not vc.positive().accepts(vc.away_from([0.0]))


def test_probability_accepts_same_axis():
    assert vc.probability().accepts(vc.probability(min_value=0.1))
    assert not vc.probability().accepts(vc.probability(axis=0))
    assert not vc.probability().accepts(vc.positive())
    assert not vc.probability().accepts(vc.real())


def test_unit_vector_accepts_same_axis():
    assert vc.unit_vector().accepts(vc.unit_vector())
    assert not vc.unit_vector().accepts(vc.unit_vector(axis=0))
    assert not vc.unit_vector().accepts(vc.probability())
    assert not vc.unit_vector().accepts(vc.real())


def test_spd_accepts_only_spd():
    assert vc.spd().accepts(vc.spd(1.0, 5.0))
    assert not vc.spd().accepts(vc.positive())
    assert not vc.spd().accepts(vc.real())


def test_away_from_accepts_covering_neighbourhoods():
    spec = vc.away_from([0.0], margin=0.2)

    assert spec.accepts(vc.away_from([0.0], margin=0.5))
    assert spec.accepts(vc.away_from([0.1], margin=0.35))
    assert spec.accepts(vc.away_from([-0.1, 0.1], margin=0.15))
    assert not spec.accepts(vc.away_from([0.0], margin=0.1))
    assert not spec.accepts(vc.away_from([1.0], margin=0.5))
    assert not spec.accepts(vc.real())
    assert not spec.accepts(vc.positive())


def test_away_from_zero_margin_accepts_real():
    assert vc.away_from([0.0], margin=0.0).accepts(vc.real())
    assert not vc.away_from([0.0], margin=0.0).accepts(vc.index("n"))


def test_largest_magnitude_of_domain_specs():
    assert vc.away_from([0.0], min_value=-3.0, max_value=5.0).largest_magnitude() == 5.0
    assert vc.unit_vector().largest_magnitude() == 1.0
    assert vc.spd(0.5, 4.0).largest_magnitude() == 4.0
    assert vc.probability().largest_magnitude() == 1.0


def test_chain_feeds_probability_to_entropy(registry):
    softmax = vc.register(
        jax.nn.softmax, "(n)->(n)", reference=jax.nn.softmax, output=vc.probability(), registry=registry
    )
    entropy = entropy_rule(registry, wrong=False)

    chain = vc.chain(softmax, entropy, registry=registry)

    assert [link.name for link in chain.links] == ["softmax", "entropy"]


def test_chain_rejects_real_into_probability(registry):
    tanh = vc.register(jnp.tanh, "(n)->(n)", reference=jnp.tanh, registry=registry)
    entropy = entropy_rule(registry, wrong=False)

    with pytest.raises(InvalidSpec) as raised:
        vc.chain(tanh, entropy, registry=registry)

    message = str(raised.value)
    assert "cannot chain 'tanh' into 'entropy'" in message
    assert "needs Probability(axis=-1, min_value=0.001) for 'p'" in message


# ----------------------------------------------------------------------------------
# End to end: correct rules pass and wrong rules fail


def entropy_of(p):
    return -jnp.sum(p * jnp.log(p))


def reciprocal_rule(registry, wrong):
    @vc.rule("(n)->(n)", specs={"x": vc.away_from([0.0])}, registry=registry)
    def reciprocal(x):
        return 1.0 / x

    @reciprocal.vjp
    def _(x, out, g):
        # The wrong rule drops the minus sign.
        return (g / x**2,) if wrong else (-g / x**2,)

    return reciprocal


def normalise_rule(registry, wrong):
    @vc.rule("(n)->(n)", specs={"x": vc.unit_vector()}, registry=registry)
    def normalise(x):
        return x / jnp.linalg.norm(x)

    @normalise.vjp
    def _(x, out, g):
        # The wrong rule drops the projection off the direction of x.
        tangential = g if wrong else g - out * jnp.dot(out, g)
        return (tangential / jnp.linalg.norm(x),)

    return normalise


def logdet_rule(registry, wrong):
    @vc.rule("(n,n)->()", specs={"A": vc.spd()}, registry=registry)
    def logdet(A):
        return jnp.linalg.slogdet(A)[1]

    @logdet.vjp
    def _(A, out, g):
        # The wrong rule inverts only the diagonal, which is right for diagonal A.
        inverse = jnp.diag(1.0 / jnp.diag(A)) if wrong else jnp.linalg.inv(A).T
        return (g * inverse,)

    return logdet


def entropy_rule(registry, wrong):
    @vc.rule("(n)->()", specs={"p": vc.probability()}, registry=registry)
    def entropy(p):
        return entropy_of(p)

    @entropy.vjp
    def _(p, out, g):
        # The wrong rule drops the derivative of the factor p in p log p.
        return (-g * jnp.log(p),) if wrong else (-g * (jnp.log(p) + 1.0),)

    return entropy


RULES = [reciprocal_rule, normalise_rule, logdet_rule, entropy_rule]


@pytest.mark.parametrize("make_rule", RULES, ids=lambda make: make.__name__)
def test_correct_domain_rule_passes(registry, make_rule):
    report = vc.check(make_rule(registry, wrong=False), **CHECK)

    assert [result.outcome for result in report.results] == ["passed", "passed"]


@pytest.mark.parametrize("make_rule", RULES, ids=lambda make: make.__name__)
def test_wrong_domain_rule_fails(registry, make_rule):
    rule = make_rule(registry, wrong=True)

    with pytest.raises(vc.RuleMismatch) as raised:
        vc.check(rule, **CHECK)

    assert f"Rule {rule.name!r}" in str(raised.value)
