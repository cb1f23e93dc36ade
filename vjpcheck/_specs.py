"""Gufunc-style signatures and per-argument specs, validated when they are built."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from vjpcheck._errors import InvalidSpec

Dim = Union[str, int]
CoreShape = tuple[Dim, ...]

_DIM = r"\s*(?:[A-Za-z_]\w*|\d+)\s*"
_ARG = rf"\(\s*(?:{_DIM}(?:,{_DIM})*)?\)"
_SIGNATURE = re.compile(rf"^\s*{_ARG}(?:\s*,\s*{_ARG})*\s*->\s*{_ARG}\s*$")
_ARG_GROUP = re.compile(r"\(([^()]*)\)")


@dataclasses.dataclass(frozen=True)
class Signature:
    """A parsed gufunc signature such as ``(h,d),(d),(h)->(h)``.

    Each core dimension is a name, bound to one size per example, or a fixed integer.
    """

    text: str
    inputs: tuple[CoreShape, ...]
    output: CoreShape

    @classmethod
    def parse(cls, text: str) -> Signature:
        """Parse ``text``, raising `InvalidSpec` with the fix when it is malformed."""
        if not isinstance(text, str):
            raise InvalidSpec(
                f"signature={text!r} is a {type(text).__name__}; pass a string "
                "such as '(h,d),(d),(h)->(h)'."
            )
        if not _SIGNATURE.match(text):
            raise InvalidSpec(
                f"signature={text!r} is not a valid gufunc signature. Write one "
                "parenthesised group of comma-separated dimension names per input, "
                "then '->' and one group for the output, as in '(h,d),(d),(h)->(h)'; "
                "use '()' for a scalar."
            )
        left, right = text.split("->")
        inputs = tuple(_parse_group(group) for group in _ARG_GROUP.findall(left))
        output = _parse_group(_ARG_GROUP.findall(right)[0])
        signature = cls(text=re.sub(r"\s+", "", text), inputs=inputs, output=output)
        signature._validate()
        return signature

    def _validate(self) -> None:
        for dim in self.all_dims():
            if isinstance(dim, int) and dim < 1:
                raise InvalidSpec(
                    f"signature={self.text!r} has a fixed dimension of size {dim}; "
                    "fixed sizes must be at least 1."
                )
        input_names = {d for shape in self.inputs for d in shape if isinstance(d, str)}
        for dim in self.output:
            if isinstance(dim, str) and dim not in input_names:
                raise InvalidSpec(
                    f"signature={self.text!r} uses dimension {dim!r} in the output but "
                    "in no input, so vjpcheck cannot tell its size. Name it in an "
                    "input or write a fixed size."
                )

    def all_dims(self) -> list[Dim]:
        return [d for shape in (*self.inputs, self.output) for d in shape]

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Named core dimensions, in order of first appearance."""
        names: dict[str, None] = {}
        for dim in self.all_dims():
            if isinstance(dim, str):
                names.setdefault(dim)
        return tuple(names)

    def shapes(self, sizes: Mapping[str, int]) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
        """Return the input shapes and the output shape for the given dimension sizes."""

        def resolve(shape: CoreShape) -> tuple[int, ...]:
            return tuple(d if isinstance(d, int) else sizes[d] for d in shape)

        return tuple(resolve(s) for s in self.inputs), resolve(self.output)

    def __str__(self) -> str:
        return self.text


def _parse_group(group: str) -> CoreShape:
    parts = [p.strip() for p in group.split(",") if p.strip()]
    return tuple(int(p) if p.isdigit() else p for p in parts)


def format_core_shape(shape: CoreShape) -> str:
    return "(" + ",".join(str(d) for d in shape) + ")"


# ----------------------------------------------------------------------------------
# Argument specs


class Spec:
    """How to draw one argument, and what values it may take (its domain)."""

    #: "float" for differentiable arrays, "index" for integer arrays.
    kind = "float"

    def elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        raise NotImplementedError

    def array_strategy(self, shape: tuple[int, ...], dtype: np.dtype) -> SearchStrategy | None:
        """Return a strategy for the whole array, or None to fill it from `elements`."""
        return None

    def accepts(self, produced: Spec) -> bool:
        """Return whether every value of an output declared as ``produced`` is in this domain."""
        return False

    def largest_magnitude(self) -> float:
        """Return an upper bound on the drawn values' magnitude, which sizes kink margins."""
        return 1.0

    def rename(self, mapping: Mapping[str, str]) -> Spec:
        return self

    def validate_for(self, core: CoreShape, where: str) -> None:
        """Raise InvalidSpec if this spec cannot draw an argument of core shape ``core``.

        ``where`` names the argument in the message, as "rule 'f': specs['x']".
        """

    def widened(self, factor: float) -> Spec:
        """Return a spec that draws from a range ``factor`` times wider, in magnitude."""
        return self


# Drawn values smaller than this in magnitude are drawn as 0. Values like 1e-279 only
# probe underflow, where both the rule and the float64 truth lose every digit.
SMALLEST_MAGNITUDE = 2.0**-20


def _snap_to_zero(value: float) -> float:
    return 0.0 if abs(value) < SMALLEST_MAGNITUDE else value


def _float_strategy(low: float, high: float, dtype: np.dtype) -> SearchStrategy[float]:
    dtype = np.dtype(dtype)
    # Hypothesis needs bounds that the dtype represents exactly: round them inwards.
    low_cast, high_cast = dtype.type(low), dtype.type(high)
    # Compare as Python floats: NumPy would compare a float32 scalar with a Python
    # float in float32, where the rounded bound equals the original.
    if float(low_cast) < low:
        low_cast = np.nextafter(low_cast, dtype.type(np.inf))
    if float(high_cast) > high:
        high_cast = np.nextafter(high_cast, dtype.type(-np.inf))
    return st.floats(
        min_value=float(low_cast),
        max_value=float(high_cast),
        width=dtype.itemsize * 8,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    ).map(_snap_to_zero if low <= 0 <= high else float)


def _check_bounds(name: str, low: float, high: float) -> None:
    for label, value in (("min_value", low), ("max_value", high)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise InvalidSpec(f"{name}({label}={value!r}): bounds must be finite numbers.")
    if low >= high:
        raise InvalidSpec(
            f"{name}(min_value={low!r}, max_value={high!r}): min_value must be less than "
            "max_value."
        )


@dataclasses.dataclass(frozen=True)
class Real(Spec):
    """Real values drawn from ``[min_value, max_value]``; any real is in the domain."""

    min_value: float = -10.0
    max_value: float = 10.0

    def __post_init__(self) -> None:
        _check_bounds("real", self.min_value, self.max_value)

    def elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        return _float_strategy(self.min_value, self.max_value, dtype)

    def accepts(self, produced: Spec) -> bool:
        return produced.kind == "float"

    def largest_magnitude(self) -> float:
        return max(abs(self.min_value), abs(self.max_value))

    def widened(self, factor: float) -> Spec:
        return Real(self.min_value * factor, self.max_value * factor)


@dataclasses.dataclass(frozen=True)
class Positive(Spec):
    """Positive values drawn from ``[min_value, max_value]``; the domain is ``x > 0``."""

    min_value: float = 0.01
    max_value: float = 10.0

    def __post_init__(self) -> None:
        _check_bounds("positive", self.min_value, self.max_value)
        if self.min_value <= 0:
            raise InvalidSpec(
                f"positive(min_value={self.min_value!r}): min_value must be greater "
                "than 0; use real() for values that may be zero or negative."
            )

    def elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        return _float_strategy(self.min_value, self.max_value, dtype)

    def accepts(self, produced: Spec) -> bool:
        return isinstance(produced, Positive)

    def largest_magnitude(self) -> float:
        return self.max_value

    def widened(self, factor: float) -> Spec:
        return Positive(self.min_value / factor, self.max_value * factor)


@dataclasses.dataclass(frozen=True)
class Index(Spec):
    """Integer indices into the named core dimension ``dim``, from 0 to its size minus 1."""

    dim: str
    kind = "index"

    def __post_init__(self) -> None:
        if not isinstance(self.dim, str) or not self.dim.isidentifier():
            raise InvalidSpec(
                f"index(dim={self.dim!r}): dim must be the name of a core dimension "
                "in the rule's signature, such as 'n'."
            )

    def rename(self, mapping: Mapping[str, str]) -> Spec:
        return Index(mapping.get(self.dim, self.dim))


@dataclasses.dataclass(frozen=True)
class Elements(Spec):
    """Array elements drawn from a user's Hypothesis strategy; the domain is unknown."""

    strategy: SearchStrategy

    def elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        return self.strategy


@dataclasses.dataclass(frozen=True)
class ArrayStrategy(Spec):
    """Whole arrays from ``make(shape, dtype)``, a function returning a Hypothesis strategy."""

    make: Callable[[tuple[int, ...], np.dtype], SearchStrategy]

    def __repr__(self) -> str:
        # The default repr shows the function's address, which differs between runs.
        name = getattr(self.make, "__qualname__", type(self.make).__name__)
        return f"ArrayStrategy(make={getattr(self.make, '__module__', '?')}.{name})"

    def array_strategy(self, shape: tuple[int, ...], dtype: np.dtype) -> SearchStrategy:
        strategy = self.make(shape, dtype)
        if not isinstance(strategy, SearchStrategy):
            raise InvalidSpec(
                f"array_strategy({self.make!r}) returned {strategy!r} for shape {shape}; "
                "the function must return a Hypothesis strategy of arrays."
            )
        return strategy


@dataclasses.dataclass(frozen=True)
class Static(Spec):
    """A non-differentiable Python value (a slope, an axis, a flag) drawn from a strategy.

    The op receives it as a static argument (``nondiff_argnums`` in JAX's terms), and
    the signature does not list it.
    """

    strategy: SearchStrategy
    kind = "static"

    def checked(self, name: str, value: Any) -> Any:
        """Return ``value`` if it can be a static argument, else raise InvalidSpec."""
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            raise InvalidSpec(
                f"the static argument {name!r} drew an array ({type(value).__name__} of shape "
                f"{tuple(value.shape)}). Static arguments take Python values such as floats, "
                "ints or tuples; to draw an array, list the argument in the signature instead."
            )
        try:
            hash(value)
        except TypeError:
            raise InvalidSpec(
                f"the static argument {name!r} drew {value!r}, which is not hashable; JAX "
                "compiles once per static value, so draw tuples instead of lists."
            ) from None
        return value


def static(strategy: SearchStrategy) -> Static:
    """Spec for a static, non-differentiable argument drawn from a Hypothesis strategy.

    >>> from hypothesis import strategies as st
    >>> slope = static(st.sampled_from([0.01, 0.1, 0.3]))
    """
    if not isinstance(strategy, SearchStrategy):
        raise InvalidSpec(
            f"static({strategy!r}): pass a Hypothesis strategy of Python values, such as "
            "st.floats(0.01, 0.3) or st.sampled_from([-1, 0])."
        )
    return Static(strategy)


def real(min_value: float = -10.0, max_value: float = 10.0) -> Real:
    """Spec for real-valued arrays drawn from ``[min_value, max_value]``.

    >>> spec = real(-1.0, 1.0)
    """
    return Real(min_value, max_value)


def positive(min_value: float = 0.01, max_value: float = 10.0) -> Positive:
    """Spec for arrays of positive values, such as probabilities or scales.

    A rule whose output is positive declares ``output=positive()`` so that random chains
    may feed it into an input that needs positive values.
    """
    return Positive(min_value, max_value)


def index(dim: str) -> Index:
    """Spec for an integer array of indices into the core dimension named ``dim``.

    >>> label = index("n")   # for cross_entropy(p, label) with signature "(n),()->()"
    """
    return Index(dim)


def elements(strategy: SearchStrategy) -> Elements:
    """Spec that fills arrays with elements drawn from a Hypothesis ``strategy``."""
    if not isinstance(strategy, SearchStrategy):
        raise InvalidSpec(f"elements({strategy!r}): pass a Hypothesis strategy of floats.")
    return Elements(strategy)


def array_strategy(make: Callable[[tuple[int, ...], np.dtype], SearchStrategy]) -> ArrayStrategy:
    """Spec that draws whole arrays from ``make(shape, dtype)``, a strategy factory.

    >>> import hypothesis.extra.numpy as hnp
    >>> spec = array_strategy(lambda shape, dtype: hnp.arrays(dtype, shape))
    """
    if not callable(make):
        raise InvalidSpec(
            f"array_strategy({make!r}): pass a function (shape, dtype) -> strategy."
        )
    return ArrayStrategy(make)


def to_spec(value: Any, where: str) -> Spec:
    """Convert what a user passed for one argument into a `Spec`."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, SearchStrategy):
        return Elements(value)
    raise InvalidSpec(
        f"{where}={value!r} is not a spec. Use vjpcheck.real(), positive(), index(dim), "
        "elements(strategy) or array_strategy(fn), or pass a Hypothesis strategy of "
        "floats."
    )
