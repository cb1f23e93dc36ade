"""Signature parsing, spec constructors, their validation errors and domain rules."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import strategies as st

import vjpcheck
from vjpcheck import InvalidSpec
from vjpcheck._specs import (
    ArrayStrategy,
    Elements,
    Index,
    Positive,
    Real,
    Signature,
    to_spec,
)

# ----------------------------------------------------------------------------------
# Signature.parse


def test_parse_named_dimensions():
    signature = Signature.parse("(h,d),(d),(h)->(h)")

    assert signature.inputs == (("h", "d"), ("d",), ("h",))
    assert signature.output == ("h",)
    assert signature.text == "(h,d),(d),(h)->(h)"


def test_parse_fixed_integer_dimensions():
    signature = Signature.parse("(n,3),(3)->(n,2)")

    assert signature.inputs == (("n", 3), (3,))
    assert signature.output == ("n", 2)
    assert isinstance(signature.inputs[0][1], int)


def test_parse_scalar_groups():
    signature = Signature.parse("(),(n)->()")

    assert signature.inputs == ((), ("n",))
    assert signature.output == ()


def test_parse_ignores_whitespace():
    signature = Signature.parse("  ( h , d ) , ( d )  ->  ( h )  ")

    assert signature.inputs == (("h", "d"), ("d",))
    assert signature.output == ("h",)
    assert signature.text == "(h,d),(d)->(h)"
    assert str(signature) == "(h,d),(d)->(h)"


def test_parse_accepts_fixed_output_dimension():
    signature = Signature.parse("(n)->(2)")

    assert signature.output == (2,)


def test_dim_names_in_first_appearance_order():
    signature = Signature.parse("(b,a),(a,c),(3)->(c,b)")

    assert signature.dim_names == ("b", "a", "c")


def test_dim_names_skip_fixed_sizes():
    signature = Signature.parse("(2,n),(n)->(2)")

    assert signature.dim_names == ("n",)


def test_shapes_resolve_dimension_sizes():
    signature = Signature.parse("(h,d),(d),(h,3)->(h)")

    inputs, output = signature.shapes({"h": 2, "d": 5})

    assert inputs == ((2, 5), (5,), (2, 3))
    assert output == (2,)


def test_shapes_of_scalar_signature():
    signature = Signature.parse("(),()->()")

    inputs, output = signature.shapes({})

    assert inputs == ((), ())
    assert output == ()


@pytest.mark.parametrize(
    "text",
    [
        "(h,d)",
        "(h,d)->",
        "h,d->h",
        "(h,d)->(h),(d)",
        "(h;d)->(h)",
        "(h,,d)->(h)",
        "(1n)->(n)",
        "",
    ],
)
def test_parse_rejects_malformed_text(text):
    with pytest.raises(InvalidSpec) as raised:
        Signature.parse(text)

    message = str(raised.value)
    assert repr(text) in message
    assert "not a valid gufunc signature" in message
    assert "'(h,d),(d),(h)->(h)'" in message
    assert "use '()' for a scalar" in message


def test_parse_rejects_output_only_dimension():
    with pytest.raises(InvalidSpec) as raised:
        Signature.parse("(n),(n)->(m)")

    message = str(raised.value)
    assert "'(n),(n)->(m)'" in message
    assert "dimension 'm' in the output but in no input" in message
    assert "Name it in an input or write a fixed size" in message


@pytest.mark.parametrize("value", [3, None, b"(n)->(n)", ("(n)->(n)",)])
def test_parse_rejects_non_string(value):
    with pytest.raises(InvalidSpec) as raised:
        Signature.parse(value)

    message = str(raised.value)
    assert f"signature={value!r}" in message
    assert type(value).__name__ in message
    assert "pass a string" in message


def test_parse_rejects_fixed_size_zero():
    with pytest.raises(InvalidSpec) as raised:
        Signature.parse("(n,0)->(n)")

    message = str(raised.value)
    assert "'(n,0)->(n)'" in message
    assert "fixed dimension of size 0" in message
    assert "fixed sizes must be at least 1" in message


def test_invalid_spec_is_value_error():
    with pytest.raises(ValueError):
        Signature.parse("(n)")


# ----------------------------------------------------------------------------------
# Spec constructors


def test_real_defaults_and_bounds():
    assert vjpcheck.real() == Real(-10.0, 10.0)
    assert vjpcheck.real(-1.0, 2.0) == Real(-1.0, 2.0)
    assert vjpcheck.real(-1, 2).max_value == 2


def test_positive_defaults_and_bounds():
    assert vjpcheck.positive() == Positive(0.01, 10.0)
    assert vjpcheck.positive(0.5, 3.0) == Positive(0.5, 3.0)


def test_index_stores_dimension_name():
    spec = vjpcheck.index("n")

    assert spec == Index("n")
    assert spec.kind == "index"


def test_elements_wraps_strategy():
    strategy = st.floats(-1.0, 1.0)

    spec = vjpcheck.elements(strategy)

    assert isinstance(spec, Elements)
    assert spec.strategy is strategy
    assert spec.elements(np.dtype(np.float32)) is strategy


def test_array_strategy_wraps_factory():
    def make(shape, dtype):
        return hnp.arrays(dtype, shape, elements=st.floats(-1.0, 1.0, width=32))

    spec = vjpcheck.array_strategy(make)

    assert isinstance(spec, ArrayStrategy)
    assert spec.make is make
    assert spec.kind == "float"


@pytest.mark.parametrize("constructor", [vjpcheck.real, vjpcheck.positive])
@pytest.mark.parametrize("low, high", [(1.0, 1.0), (2.0, 1.0)])
def test_bounds_reject_min_not_below_max(constructor, low, high):
    with pytest.raises(InvalidSpec) as raised:
        constructor(low, high)

    message = str(raised.value)
    assert f"{constructor.__name__}(min_value={low!r}, max_value={high!r})" in message
    assert "min_value must be less than max_value" in message


@pytest.mark.parametrize("constructor", [vjpcheck.real, vjpcheck.positive])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_bounds_reject_non_finite_values(constructor, bad):
    with pytest.raises(InvalidSpec) as raised:
        constructor(0.5, bad)

    message = str(raised.value)
    assert f"{constructor.__name__}(max_value={bad!r})" in message
    assert "bounds must be finite numbers" in message


@pytest.mark.parametrize("bad", ["0", None, True])
def test_real_rejects_non_number_bound(bad):
    with pytest.raises(InvalidSpec) as raised:
        vjpcheck.real(bad, 1.0)

    message = str(raised.value)
    assert f"real(min_value={bad!r})" in message
    assert "bounds must be finite numbers" in message


def test_real_accepts_numpy_float32_bounds():
    spec = vjpcheck.real(np.float32(-1.0), np.float32(1.0))

    assert spec.max_value == 1.0


@pytest.mark.parametrize("low", [0.0, -0.5])
def test_positive_rejects_min_not_above_zero(low):
    with pytest.raises(InvalidSpec) as raised:
        vjpcheck.positive(low, 1.0)

    message = str(raised.value)
    assert f"positive(min_value={low!r})" in message
    assert "min_value must be greater than 0" in message
    assert "use real()" in message


@pytest.mark.parametrize("dim", ["1n", "a b", "", "n-1", 3, None])
def test_index_rejects_non_identifier(dim):
    with pytest.raises(InvalidSpec) as raised:
        vjpcheck.index(dim)

    message = str(raised.value)
    assert f"index(dim={dim!r})" in message
    assert "name of a core dimension" in message


@pytest.mark.parametrize("value", [3.0, [0.0, 1.0], None, np.float32(1.0)])
def test_elements_rejects_non_strategy(value):
    with pytest.raises(InvalidSpec) as raised:
        vjpcheck.elements(value)

    message = str(raised.value)
    assert f"elements({value!r})" in message
    assert "pass a Hypothesis strategy of floats" in message


def test_array_strategy_rejects_non_callable():
    with pytest.raises(InvalidSpec) as raised:
        vjpcheck.array_strategy(st.floats())

    message = str(raised.value)
    assert "array_strategy(floats())" in message
    assert "pass a function (shape, dtype) -> strategy" in message


def test_array_strategy_rejects_factory_returning_non_strategy():
    spec = vjpcheck.array_strategy(lambda shape, dtype: np.zeros(shape, dtype))

    with pytest.raises(InvalidSpec) as raised:
        spec.array_strategy((2, 3), np.dtype(np.float32))

    message = str(raised.value)
    assert "for shape (2, 3)" in message
    assert "array([[0., 0., 0.]" in message
    assert "the function must return a Hypothesis strategy of arrays" in message


def test_largest_magnitude_of_each_spec():
    assert vjpcheck.real(-3.0, 2.0).largest_magnitude() == 3.0
    assert vjpcheck.real(-1.0, 5.0).largest_magnitude() == 5.0
    assert vjpcheck.positive(0.5, 4.0).largest_magnitude() == 4.0
    assert vjpcheck.elements(st.floats()).largest_magnitude() == 1.0


def test_index_rename_maps_dimension():
    assert vjpcheck.index("n").rename({"n": "k"}) == Index("k")
    assert vjpcheck.index("n").rename({"m": "k"}) == Index("n")


# ----------------------------------------------------------------------------------
# Domains


FLOAT_SPECS = [
    vjpcheck.real(),
    vjpcheck.real(-1.0, 1.0),
    vjpcheck.positive(),
    vjpcheck.elements(st.floats(0.0, 1.0)),
    vjpcheck.array_strategy(lambda shape, dtype: hnp.arrays(dtype, shape)),
]


@pytest.mark.parametrize("produced", FLOAT_SPECS, ids=repr)
def test_real_accepts_any_float_spec(produced):
    assert vjpcheck.real().accepts(produced)


def test_real_rejects_index_spec():
    assert not vjpcheck.real().accepts(vjpcheck.index("n"))


def test_positive_accepts_positive_spec():
    assert vjpcheck.positive().accepts(vjpcheck.positive(2.0, 3.0))


@pytest.mark.parametrize(
    "produced",
    [
        vjpcheck.real(),
        vjpcheck.real(0.5, 1.0),
        vjpcheck.elements(st.floats(0.5, 1.0)),
        vjpcheck.array_strategy(lambda shape, dtype: hnp.arrays(dtype, shape)),
        vjpcheck.index("n"),
    ],
    ids=repr,
)
def test_positive_rejects_other_specs(produced):
    assert not vjpcheck.positive().accepts(produced)


@pytest.mark.parametrize("produced", [*FLOAT_SPECS, vjpcheck.index("n")], ids=repr)
def test_index_accepts_nothing(produced):
    assert not vjpcheck.index("n").accepts(produced)


# ----------------------------------------------------------------------------------
# to_spec


def test_to_spec_returns_spec_unchanged():
    spec = vjpcheck.positive()

    assert to_spec(spec, "specs['x']") is spec


def test_to_spec_wraps_bare_strategy():
    strategy = st.floats(-2.0, 2.0)

    spec = to_spec(strategy, "specs['x']")

    assert isinstance(spec, Elements)
    assert spec.strategy is strategy


@pytest.mark.parametrize("value", [1.0, "real", None, Real, [Real()]])
def test_to_spec_rejects_other_objects(value):
    with pytest.raises(InvalidSpec) as raised:
        to_spec(value, "specs['x']")

    message = str(raised.value)
    assert f"specs['x']={value!r} is not a spec" in message
    assert "vjpcheck.real()" in message
    assert "pass a Hypothesis strategy of floats" in message
