"""Specs to Hypothesis strategies: core dimension sizes, primals, tangents, cotangents."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import hypothesis.extra.numpy as hnp
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import StopTest
from hypothesis.internal.conjecture.data import Status
from hypothesis.strategies import DataObject, SearchStrategy

from vjpcheck import _numerics as num
from vjpcheck._errors import InvalidSpec
from vjpcheck._rules import Rule
from vjpcheck._specs import Index, ProjectedSpec, Real, Spec

COTANGENT_SPEC = Real(-10.0, 10.0)
TANGENT_SPEC = Real(-1.0, 1.0)
# Kink margin, relative to the largest magnitude a spec draws: wide enough that
# central differences never step across a kink.
KINK_MARGIN = 1e-3


@dataclasses.dataclass(frozen=True)
class ShapeOptions:
    """Bounds on drawn core dimension sizes."""

    min_side: int = 1
    max_side: int = 4
    distinct_dims: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.min_side, int) and self.min_side >= 1):
            raise InvalidSpec(f"min_side={self.min_side!r} must be an integer >= 1.")
        if not (isinstance(self.max_side, int) and self.max_side >= self.min_side):
            raise InvalidSpec(
                f"max_side={self.max_side!r} must be an integer >= min_side={self.min_side}."
            )


@dataclasses.dataclass
class Example:
    """One drawn input: the primals and the core dimension sizes behind their shapes."""

    primals: tuple[np.ndarray, ...]
    sizes: dict[str, int]
    output_shape: tuple[int, ...]


# Hypothesis validates a strategy on first use, which costs more than a draw, so the
# strategies below are built once per spec, shape and dtype.
_cache = functools.lru_cache(maxsize=4096)


@_cache
def dim_sizes(names: tuple[str, ...], options: ShapeOptions) -> SearchStrategy[dict[str, int]]:
    """Sizes for the named core dimensions, as a dict from name to size.

    Differently named dimensions get different sizes when the range allows it, because
    equal sizes hide transposed and misplaced axes: a transposed weight gradient has the
    right shape, and often the right values, on a square matrix.
    """
    return _sizes(tuple(names), options)


@st.composite
def _sizes(draw, names: tuple[str, ...], options: ShapeOptions) -> dict[str, int]:
    available = list(range(options.min_side, options.max_side + 1))
    unique = options.distinct_dims and len(names) <= len(available)
    sizes = {}
    for name in names:
        if unique:
            # sampled_from shrinks towards the first, smallest, size still free.
            sizes[name] = draw(st.sampled_from(available))
            available.remove(sizes[name])
        else:
            sizes[name] = draw(st.integers(options.min_side, options.max_side))
    return sizes


@_cache
def float_arrays(spec: Spec, shape: tuple[int, ...], dtype: np.dtype) -> SearchStrategy[np.ndarray]:
    dtype = np.dtype(dtype)
    if isinstance(spec, ProjectedSpec):
        return projected_arrays(spec, shape, dtype)
    if dtype == np.dtype(jnp.bfloat16):
        # Hypothesis has no bfloat16 floats: draw float32 and round.
        return float_arrays(spec, shape, np.dtype(np.float32)).map(lambda array: array.astype(dtype))
    custom = spec.array_strategy(shape, dtype)
    if custom is None:
        return hnp.arrays(dtype, shape, elements=spec.elements(dtype))
    return custom.map(lambda array: _checked_array(array, shape, dtype, spec))


def projected_arrays(spec: ProjectedSpec, shape: tuple[int, ...], dtype: np.dtype) -> SearchStrategy[np.ndarray]:
    # The projection rounds to bfloat16 itself, because rounding its result afterwards
    # could leave the domain, for example by making a matrix indefinite.
    draw_dtype = np.dtype(np.float32) if dtype == np.dtype(jnp.bfloat16) else dtype
    raw = hnp.arrays(draw_dtype, shape, elements=spec.raw_elements(draw_dtype))
    return raw.map(lambda array: spec.project(array, dtype))


def _checked_array(array, shape, dtype, spec) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape or not num.is_float(array.dtype):
        raise InvalidSpec(
            f"{spec!r} drew an array of shape {array.shape} and dtype {array.dtype} where "
            f"shape {shape} and a floating dtype were needed; build the strategy from the "
            "shape and dtype it is given."
        )
    return array.astype(dtype)


def kink_margin(spec: Spec) -> float:
    return KINK_MARGIN * max(1.0, spec.largest_magnitude())


def keep_off_kinks(array: np.ndarray, kinks: Sequence[float], margin: float) -> np.ndarray:
    """Move elements closer than ``margin`` to a kink out to exactly ``margin`` away."""
    values = np.asarray(array, np.float64).copy()
    for kink in kinks:
        offset = values - kink
        near = np.abs(offset) < margin
        direction = np.where(offset < 0, -1.0, 1.0)
        values = np.where(near, kink + direction * margin, values)
    return values.astype(array.dtype)


def keep_apart(array: np.ndarray, margin: float) -> np.ndarray:
    """Spread tied or nearly tied elements so that any two differ by at least ``margin``."""
    values = np.asarray(array, np.float64)
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    spread = flat[order].copy()
    for k in range(1, spread.size):
        spread[k] = max(spread[k], spread[k - 1] + margin)
    result = np.empty_like(flat)
    result[order] = spread
    return result.reshape(values.shape).astype(array.dtype)


@_cache
def index_arrays(shape: tuple[int, ...], size: int) -> SearchStrategy[np.ndarray]:
    return hnp.arrays(np.int32, shape, elements=st.integers(0, size - 1))


# NOTE: moving values off kinks after a projected spec's projection can move them
# slightly out of its domain. A unit vector whose zero component moves out to the
# margin, for example, is no longer of unit length.
@_cache
def kinked_arrays(spec: Spec, shape: tuple[int, ...], dtype: np.dtype, kinks: tuple[float, ...]) -> SearchStrategy[np.ndarray]:
    margin = kink_margin(spec)
    return float_arrays(spec, shape, dtype).map(lambda array: keep_off_kinks(array, kinks, margin))


def primal_strategy(
    rule: Rule,
    index: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    sizes: dict[str, int],
    widen: float = 1.0,
    on_kinks: bool = False,
) -> SearchStrategy:
    """Return the strategy for argument ``index``; ``on_kinks`` keeps values that fall
    on declared kink points there instead of moving them off."""
    spec = rule.specs[index].widened(widen) if widen != 1.0 else rule.specs[index]
    if isinstance(spec, Index):
        return index_arrays(shape, sizes[spec.dim])
    strategy = float_arrays(spec, shape, dtype)
    kinks = rule.kinks.get(index)
    if kinks and not on_kinks:
        strategy = kinked_arrays(spec, shape, dtype, kinks)
    if index in rule.ties:
        margin = kink_margin(spec)
        strategy = strategy.map(lambda array: keep_apart(array, margin))
    return strategy


def draw_example(
    data: DataObject,
    rule: Rule,
    dtype: np.dtype,
    options: ShapeOptions,
    on_give_up: Callable[[str], None] | None = None,
    widen: float = 1.0,
    sizes: dict[str, int] | None = None,
    suffix: str = "",
    on_kinks: bool = False,
) -> Example:
    """Draw core sizes, then every primal, each under its argument's name.

    ``on_give_up`` receives a reason when an argument's spec gives up on a draw (a
    Hypothesis filter that rejected every value it tried), so the run can say which.
    ``widen`` scales the ranges of real and positive specs. Given ``sizes``, the
    shapes are those, and ``suffix`` tells the draws of this example apart.
    """
    if sizes is None:
        sizes = data.draw(dim_sizes(tuple(rule.signature.dim_names), options), label="core dimension sizes")
    input_shapes, output_shape = rule.signature.shapes(sizes)
    primals = []
    for i, (name, shape) in enumerate(zip(rule.arg_names, input_shapes)):
        strategy = primal_strategy(rule, i, shape, dtype, sizes, widen, on_kinks)
        try:
            primals.append(data.draw(strategy, label=name + suffix))
        except StopTest:
            # Hypothesis also stops a test case that ran out of data; only a filter
            # that rejected every value marks it invalid.
            if on_give_up is not None and data.conjecture_data.status == Status.INVALID:
                on_give_up(f"the spec for {name!r} gave up on a draw")
            raise
    return Example(primals=tuple(primals), sizes=sizes, output_shape=output_shape)


def draw_cotangent(data: DataObject, shape: tuple[int, ...], dtype: np.dtype, label: str = "cotangent") -> np.ndarray:
    return data.draw(float_arrays(COTANGENT_SPEC, shape, dtype), label=label)


def draw_tangents(data: DataObject, rule: Rule, example: Example, dtype: np.dtype) -> tuple[np.ndarray, ...]:
    return tuple(
        data.draw(
            float_arrays(TANGENT_SPEC, example.primals[i].shape, dtype),
            label=f"tangent for {rule.arg_names[i]}",
        )
        for i in rule.float_inputs
    )
