"""Gufunc-style signatures and per-argument specs, validated when they are built."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from vjpcheck._errors import InvalidSpec, is_collecting

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
        return isinstance(produced, (Positive, Probability))

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



@dataclasses.dataclass(frozen=True)
class BrokenSpec:
    """A spec whose constructor raised `InvalidSpec` while a command collected rules.

    The rule that uses it raises the stored error when it is declared, so that only
    that rule fails and the rest of its module still loads. ``location`` is where the
    constructor was called, as ``path:line``.
    """

    error: InvalidSpec
    location: str

    def raise_error(self) -> None:
        """Raise the stored error, marking this spec as used by a declaration."""
        if self in _unused_broken_specs:
            _unused_broken_specs.remove(self)
        raise InvalidSpec(f"{self.error} The spec is created at {self.location}.") from None


# Broken specs made while collecting that no declaration has used yet, which a command
# reports on their own so that no error goes unseen.
_unused_broken_specs: list[BrokenSpec] = []


def take_unused_broken_specs() -> list[BrokenSpec]:
    """Return the broken specs that no declaration used, and forget them."""
    unused = list(_unused_broken_specs)
    _unused_broken_specs.clear()
    return unused


def _deferrable(constructor: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a public constructor so that, while a command collects rules, its
    `InvalidSpec` becomes a `BrokenSpec` instead of stopping the module's import."""

    @functools.wraps(constructor)
    def build(*args: Any, **kwargs: Any) -> Any:
        try:
            return constructor(*args, **kwargs)
        except InvalidSpec as error:
            if not is_collecting():
                raise
            caller = sys._getframe(1)
            broken = BrokenSpec(error, f"{short_path(caller.f_code.co_filename)}:{caller.f_lineno}")
            _unused_broken_specs.append(broken)
            return broken

    return build


def short_path(path: str) -> str:
    """Return ``path`` relative to the current folder when it lies below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


@_deferrable
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


@_deferrable
def real(min_value: float = -10.0, max_value: float = 10.0) -> Real:
    """Spec for real-valued arrays drawn from ``[min_value, max_value]``.

    >>> spec = real(-1.0, 1.0)
    """
    return Real(min_value, max_value)


@_deferrable
def positive(min_value: float = 0.01, max_value: float = 10.0) -> Positive:
    """Spec for arrays of positive values, such as probabilities or scales.

    A rule whose output is positive declares ``output=positive()`` so that random chains
    may feed it into an input that needs positive values.
    """
    return Positive(min_value, max_value)


@_deferrable
def index(dim: str) -> Index:
    """Spec for an integer array of indices into the core dimension named ``dim``.

    >>> label = index("n")   # for cross_entropy(p, label) with signature "(n),()->()"
    """
    return Index(dim)


@_deferrable
def elements(strategy: SearchStrategy) -> Elements:
    """Spec that fills arrays with elements drawn from a Hypothesis ``strategy``."""
    if not isinstance(strategy, SearchStrategy):
        raise InvalidSpec(f"elements({strategy!r}): pass a Hypothesis strategy of floats.")
    return Elements(strategy)


@_deferrable
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


# ----------------------------------------------------------------------------------
# Projected specs: raw draws mapped into a domain, so that no draw is discarded

# The default margin of away_from, as a fraction of the width of its range.
AWAY_FROM_MARGIN = 0.01


class ProjectedSpec(Spec):
    """A spec whose arrays are raw draws projected into its domain.

    `float_arrays` fills an array with `raw_elements`, drawn in float32 for bfloat16,
    and passes it to `project`, which rounds it to the dtype under test without leaving
    the domain. Raw draws shrink towards 0, so examples shrink towards what `project`
    makes of zeros.
    """

    def raw_elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        raise NotImplementedError

    def project(self, raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Map a raw array into the domain, and return it in ``dtype``."""
        raise NotImplementedError


def _round_towards(values: np.ndarray, dtype: np.dtype, target: float) -> np.ndarray:
    """Round float64 ``values`` to ``dtype`` in the direction of ``target``, +inf or -inf."""
    values = np.asarray(values, np.float64)
    rounded = values.astype(dtype)
    widened = rounded.astype(np.float64)
    wrong_side = widened < values if target > 0 else widened > values
    return np.where(wrong_side, np.nextafter(rounded, np.asarray(target, dtype)), rounded)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_axis(call: str, axis: Any) -> None:
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise InvalidSpec(f"{call}(axis={axis!r}): axis must be an integer, such as -1 for the last axis.")


def _check_core_axis(core: CoreShape, axis: int, where: str, call: str) -> None:
    shape = format_core_shape(core)
    if not core:
        raise InvalidSpec(
            f"{where} = {call} needs an argument with at least one core dimension, but "
            f"its core shape is {shape}, a scalar. Give the argument a dimension in the "
            "signature, as in '(n)'."
        )
    if not -len(core) <= axis < len(core):
        raise InvalidSpec(
            f"{where} = {call} normalises along axis {axis}, which core shape {shape} "
            f"does not have. Use an axis from {-len(core)} to {len(core) - 1}."
        )


@dataclasses.dataclass(frozen=True)
class AwayFrom(ProjectedSpec):
    """Real values in ``[min_value, max_value]`` at least ``margin`` from each of ``points``.

    The domain is every real at least ``margin`` from each point. A raw draw closer
    than that moves out to the nearer edge of the excluded interval that lies in the
    range.
    """

    points: tuple[float, ...]
    min_value: float = -10.0
    max_value: float = 10.0
    margin: float = 0.2

    def __post_init__(self) -> None:
        _check_bounds("away_from", self.min_value, self.max_value)
        if not _is_number(self.margin) or self.margin < 0:
            raise InvalidSpec(
                f"away_from(margin={self.margin!r}): margin must be a finite number >= 0, "
                "the smallest distance kept from each point."
            )
        for low, high in self.excluded():
            if low <= self.min_value and high >= self.max_value:
                raise InvalidSpec(
                    f"away_from(points={list(self.points)}, min_value={self.min_value!r}, "
                    f"max_value={self.max_value!r}, margin={self.margin!r}): every value in "
                    "[min_value, max_value] lies within margin of a point, so there is "
                    "nothing to draw. Lower margin or widen [min_value, max_value]."
                )

    def excluded(self) -> list[tuple[float, float]]:
        """Return the open intervals within ``margin`` of a point, merged where they meet."""
        if self.margin == 0:
            return []
        intervals: list[tuple[float, float]] = []
        for point in sorted(self.points):
            low, high = point - self.margin, point + self.margin
            if intervals and low <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], high))
            else:
                intervals.append((low, high))
        return intervals

    def raw_elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        return _float_strategy(self.min_value, self.max_value, dtype)

    def project(self, raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
        lowest = float(_round_towards(self.min_value, dtype, np.inf))
        highest = float(_round_towards(self.max_value, dtype, -np.inf))
        values = np.clip(raw.astype(dtype).astype(np.float64), lowest, highest)
        for low, high in self.excluded():
            inside = (values > low) & (values < high)
            if inside.any():
                values = np.where(inside, self._exit(values, low, high, lowest, highest, dtype), values)
        return values.astype(dtype)

    def _exit(self, values, low, high, lowest, highest, dtype) -> np.ndarray:
        """Return the nearer edge of ``(low, high)`` for each value, as a ``dtype`` value in range."""
        below = float(_round_towards(low, dtype, -np.inf))
        above = float(_round_towards(high, dtype, np.inf))
        below_fits, above_fits = below >= lowest, above <= highest
        if not (below_fits or above_fits):
            raise InvalidSpec(
                f"{self!r}: no {np.dtype(dtype).name} value in [min_value, max_value] lies "
                f"outside ({low!r}, {high!r}). Lower margin or widen [min_value, max_value]."
            )
        if not below_fits:
            return np.full_like(values, above)
        if not above_fits:
            return np.full_like(values, below)
        return np.where(values - low < high - values, below, above)

    def accepts(self, produced: Spec) -> bool:
        own = self.excluded()
        if not own:
            return produced.kind == "float"
        if not isinstance(produced, AwayFrom):
            return False
        theirs = produced.excluded()
        return all(any(a <= low and high <= b for a, b in theirs) for low, high in own)

    def largest_magnitude(self) -> float:
        return max(abs(self.min_value), abs(self.max_value))

    def widened(self, factor: float) -> Spec:
        return AwayFrom(self.points, self.min_value * factor, self.max_value * factor, self.margin / factor)


@dataclasses.dataclass(frozen=True)
class UnitVector(ProjectedSpec):
    """Arrays of unit Euclidean length along ``axis``.

    A raw draw normalises to unit length. One of zero length becomes the first basis
    vector, which is also what examples shrink to.
    """

    axis: int = -1

    def __post_init__(self) -> None:
        _check_axis("unit_vector", self.axis)

    def validate_for(self, core: CoreShape, where: str) -> None:
        _check_core_axis(core, self.axis, where, f"unit_vector(axis={self.axis})")

    def raw_elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        return _float_strategy(-1.0, 1.0, dtype)

    def project(self, raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
        values = raw.astype(np.float64)
        length = np.linalg.norm(values, axis=self.axis, keepdims=True)
        first = np.zeros(values.shape[self.axis])
        first[0] = 1.0
        first = np.expand_dims(first, tuple(i for i in range(values.ndim) if i != self.axis % values.ndim))
        zero_length = length < SMALLEST_MAGNITUDE
        unit = np.where(zero_length, first, values / np.where(zero_length, 1.0, length))
        return unit.astype(dtype)

    def accepts(self, produced: Spec) -> bool:
        return isinstance(produced, UnitVector) and produced.axis == self.axis


@dataclasses.dataclass(frozen=True)
class Spd(ProjectedSpec):
    """Symmetric positive-definite matrices over the last two axes.

    Each matrix is ``B B^T / n + min_eigenvalue * I`` for a drawn n-by-n ``B`` with
    entries in ``[-s, s]``, ``s = sqrt(max_value - min_eigenvalue)``. Its eigenvalues
    are at least ``min_eigenvalue`` and its entries at most ``max_value`` in magnitude,
    up to rounding in the dtype. Examples shrink towards ``min_eigenvalue * I``.
    """

    min_eigenvalue: float = 0.1
    max_value: float = 10.0

    def __post_init__(self) -> None:
        for label, value in (("min_eigenvalue", self.min_eigenvalue), ("max_value", self.max_value)):
            if not _is_number(value):
                raise InvalidSpec(f"spd({label}={value!r}): {label} must be a finite number.")
        if self.min_eigenvalue <= 0:
            raise InvalidSpec(
                f"spd(min_eigenvalue={self.min_eigenvalue!r}): min_eigenvalue must be "
                "greater than 0, or the matrices may be singular."
            )
        if self.max_value <= self.min_eigenvalue:
            raise InvalidSpec(
                f"spd(min_eigenvalue={self.min_eigenvalue!r}, max_value={self.max_value!r}): "
                "max_value must be greater than min_eigenvalue."
            )

    def validate_for(self, core: CoreShape, where: str) -> None:
        if len(core) < 2 or core[-1] != core[-2]:
            raise InvalidSpec(
                f"{where} = spd() needs a square matrix in its last two core dimensions, "
                f"but its core shape is {format_core_shape(core)}. Write those two "
                "dimensions as one name repeated, as in '(n,n)', or as equal fixed sizes."
            )

    def raw_elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        scale = math.sqrt(self.max_value - self.min_eigenvalue)
        return _float_strategy(-scale, scale, dtype)

    def project(self, raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
        factor = raw.astype(np.float64)
        size = factor.shape[-1]
        product = factor @ np.swapaxes(factor, -1, -2) / size
        # BLAS may round the two triangles differently, so take the mean, which is exactly symmetric.
        symmetric = (product + np.swapaxes(product, -1, -2)) / 2
        return _round_definite(symmetric + self.min_eigenvalue * np.eye(size), self.min_eigenvalue, dtype)

    def accepts(self, produced: Spec) -> bool:
        return isinstance(produced, Spd)

    def largest_magnitude(self) -> float:
        return self.max_value

    def widened(self, factor: float) -> Spec:
        return Spd(self.min_eigenvalue / factor, self.max_value * factor)


def _round_definite(matrix: np.ndarray, min_eigenvalue: float, dtype: np.dtype) -> np.ndarray:
    """Round symmetric matrices to ``dtype``, keeping eigenvalues at least ``min_eigenvalue``.

    Rounding the entries can lower an eigenvalue by up to n * eps * max|entry|, which
    in bfloat16 exceeds the default min_eigenvalue. The diagonal takes the lost amount
    back, and rounds upwards, which by Weyl's inequality only raises eigenvalues.
    """
    rounded = matrix.astype(dtype).astype(np.float64)
    lowest = np.linalg.eigvalsh(rounded)[..., :1]
    diagonal = np.diagonal(rounded, axis1=-2, axis2=-1) + np.maximum(min_eigenvalue - lowest, 0.0)
    rows = np.arange(matrix.shape[-1])
    rounded[..., rows, rows] = _round_towards(diagonal, dtype, np.inf)
    return rounded.astype(dtype)


@dataclasses.dataclass(frozen=True)
class Probability(ProjectedSpec):
    """Probability vectors along ``axis``: entries at least ``min_value`` that sum to 1.

    The domain is positive vectors that sum to 1, whatever ``min_value`` is. A raw draw
    of weights in [0, 1] becomes ``min_value + (1 - n * min_value) * w / sum(w)`` for
    n entries, and all-zero weights become the uniform distribution.
    """

    axis: int = -1
    min_value: float = 1e-3

    def __post_init__(self) -> None:
        _check_axis("probability", self.axis)
        if not _is_number(self.min_value) or not 0 < self.min_value < 1:
            raise InvalidSpec(
                f"probability(min_value={self.min_value!r}): min_value must be a number "
                "greater than 0 and less than 1, the smallest probability drawn."
            )

    def validate_for(self, core: CoreShape, where: str) -> None:
        call = f"probability(axis={self.axis}, min_value={self.min_value!r})"
        _check_core_axis(core, self.axis, where, call)
        size = core[self.axis]
        if isinstance(size, int):
            self._check_size(size, f"{where} = {call}")

    def _check_size(self, size: int, where: str) -> None:
        if size * self.min_value >= 1:
            raise InvalidSpec(
                f"{where}: {size} probabilities of at least {self.min_value!r} sum to more "
                f"than 1. Lower min_value below 1/{size}."
            )

    def raw_elements(self, dtype: np.dtype) -> SearchStrategy[float]:
        return _float_strategy(0.0, 1.0, dtype)

    def project(self, raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
        weights = raw.astype(np.float64)
        size = weights.shape[self.axis]
        self._check_size(size, repr(self))
        total = weights.sum(axis=self.axis, keepdims=True)
        shares = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 1.0 / size)
        probabilities = self.min_value + (1.0 - size * self.min_value) * shares
        return _round_keeping_sum(probabilities, self.axis, dtype)

    def accepts(self, produced: Spec) -> bool:
        return isinstance(produced, Probability) and produced.axis == self.axis

    def widened(self, factor: float) -> Spec:
        return Probability(self.axis, self.min_value / factor)


def _round_keeping_sum(probabilities: np.ndarray, axis: int, dtype: np.dtype) -> np.ndarray:
    """Round to ``dtype`` so that each vector still sums to 1 and no entry gets smaller.

    Every entry rounds upwards except the largest, which takes 1 minus the others.
    """
    rounded = _round_towards(probabilities, dtype, np.inf).astype(np.float64)
    largest = np.expand_dims(np.argmax(rounded, axis=axis), axis)
    others = rounded.sum(axis=axis, keepdims=True) - np.take_along_axis(rounded, largest, axis)
    np.put_along_axis(rounded, largest, 1.0 - others, axis)
    return rounded.astype(dtype)


@_deferrable
def away_from(
    points: Any, min_value: float = -10.0, max_value: float = 10.0, margin: float | None = None
) -> AwayFrom:
    """Spec for real values in ``[min_value, max_value]`` at least ``margin`` from each point.

    For an op with a pole or a branch point, such as ``1/x`` at 0. ``margin`` defaults
    to 1% of ``max_value - min_value`` (0.2 for the default range). Draws nearer to a
    point move out to the margin, so none are discarded.

    >>> spec = away_from([0.0])   # for reciprocal(x) = 1 / x
    """
    _check_bounds("away_from", min_value, max_value)
    if margin is None:
        margin = AWAY_FROM_MARGIN * (max_value - min_value)
    return AwayFrom(_point_tuple(points), min_value, max_value, margin)


def _point_tuple(points: Any) -> tuple[float, ...]:
    if _is_number(points):
        return (float(points),)
    message = (
        f"away_from(points={points!r}): points must be a non-empty list of finite "
        "numbers, such as [0.0] for a pole at 0."
    )
    if isinstance(points, (str, bytes)) or not hasattr(points, "__iter__"):
        raise InvalidSpec(message)
    values = tuple(points)
    if not values or not all(_is_number(p) for p in values):
        raise InvalidSpec(message)
    return tuple(sorted(float(p) for p in values))


@_deferrable
def unit_vector(axis: int = -1) -> UnitVector:
    """Spec for arrays of unit Euclidean length along ``axis``, such as directions.

    A drawn vector of zero length is replaced by the first basis vector.

    >>> spec = unit_vector()   # for an op on directions with signature "(n)->()"
    """
    return UnitVector(axis)


@_deferrable
def spd(min_eigenvalue: float = 0.1, max_value: float = 10.0) -> Spd:
    """Spec for symmetric positive-definite matrices, such as covariances.

    The last two core dimensions must be square, as in ``(n,n)``. Eigenvalues are at
    least ``min_eigenvalue`` and entries at most ``max_value`` in magnitude.

    >>> spec = spd()   # for logdet(A) with signature "(n,n)->()"
    """
    return Spd(min_eigenvalue, max_value)


@_deferrable
def probability(axis: int = -1, min_value: float = 1e-3) -> Probability:
    """Spec for probability vectors along ``axis``: positive entries that sum to 1.

    Entries are at least ``min_value``, so that ``log(p)`` stays finite. A rule whose
    output is a distribution, such as softmax, declares ``output=probability()`` so
    that chains may feed it to an input that needs one.

    >>> spec = probability()   # for entropy(p) with signature "(n)->()"
    """
    return Probability(axis, min_value)


def to_spec(value: Any, where: str) -> Spec:
    """Convert what a user passed for one argument into a `Spec`."""
    if isinstance(value, BrokenSpec):
        value.raise_error()
    if isinstance(value, Spec):
        return value
    if isinstance(value, SearchStrategy):
        return Elements(value)
    raise InvalidSpec(
        f"{where}={value!r} is not a spec. Use vjpcheck.real(), positive(), "
        "away_from(points), unit_vector(), spd(), probability(), index(dim), "
        "elements(strategy) or array_strategy(fn), or pass a Hypothesis strategy of "
        "floats."
    )
