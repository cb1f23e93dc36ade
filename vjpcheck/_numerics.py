"""The error model, finite differences and float64 truth.

The error model
---------------
vjpcheck computes the truth, the expected cotangent G64, in float64 by differentiating
the reference with JAX. The rule runs in the dtype under test. Rounding error is
proportional to the magnitudes of the terms that were added up, not to the size of the
result, which cancellation can make arbitrarily small. So each element i of a cotangent
is judged against

    scale_i = max(m_rule_i, m_ref_i) + |G64_i|,

where eps * m_rule and eps * m_ref bound, to first order, the rounding error of element
i in the rule's computation and in the reference's. Both grow with the magnitudes of
the terms that entered the element, as `vjpcheck._magnitudes` explains. The element
passes when

    |obtained_i - G64_i| <= rtol * scale_i + atol.

By default ``atol`` is the dtype's smallest normal number divided by its epsilon, the
size below which underflow (which XLA flushes to zero) costs more than one epsilon of
relative precision, and ``rtol`` is the larger of

- a floor of `FLOOR_EPS` machine epsilons of the dtype, and
- `AUTODIFF_FACTOR` times the relative error (error / scale, largest over the elements)
  that JAX's own autodiff of the reference makes in float32 on the same input, scaled
  from float32's epsilon to the dtype's. An ill-conditioned input, where any
  implementation loses digits (softmax of logits near 100, say), widens the tolerance
  by as much as it costs JAX itself.

Users override ``rtol`` and ``atol`` per rule or per call.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vjpcheck import _magnitudes as magnitudes

FLOOR_EPS = 16.0
AUTODIFF_FACTOR = 8.0
# JAX's own autodiff of the reference runs in this dtype, or in the dtype under test
# when that is narrower, to measure how many digits the input lets any implementation
# keep. (In float64 it would reproduce the truth exactly and measure nothing.)
AUTODIFF_DTYPE = np.dtype(np.float32)


def is_float(dtype: Any) -> bool:
    """Return whether ``dtype`` is a floating dtype, bfloat16 included."""
    return bool(jnp.issubdtype(dtype, jnp.floating))


def autodiff_dtype(dtype: np.dtype) -> np.dtype:
    """Return the dtype in which JAX's own autodiff error is measured for ``dtype``."""
    return np.dtype(dtype) if np.dtype(dtype).itemsize < AUTODIFF_DTYPE.itemsize else AUTODIFF_DTYPE
# Central differences: the step is FD_STEP times the inputs' scale, near the cube root
# of float64 epsilon, which balances truncation error against rounding error.
FD_STEP = 6e-6
# Central differences are evaluated at these fractions of the step. Consecutive steps
# estimate each other's truncation error, and the pair that agrees best is used, so a
# nearby singularity, where the first step is too long, still gets an accurate quotient.
FD_SHRINKS = tuple(4.0**-k for k in range(7))


@contextlib.contextmanager
def x64_mode(dtype: np.dtype) -> Iterator[None]:
    """Run JAX with 64-bit types on for a 64-bit dtype, restoring the setting afterwards.

    For 32-bit dtypes the user's own setting is kept, so a rule runs as it does in the
    user's code.
    """
    if np.dtype(dtype).itemsize == 8 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            yield
    else:
        yield


def truth_mode() -> contextlib.AbstractContextManager:
    """Context in which the float64 truth is computed."""
    return x64_mode(np.dtype(np.float64))


def cast_floats(values: Sequence[Any], dtype: Any) -> tuple[Any, ...]:
    """Cast the floating-point arrays in ``values`` to ``dtype``; leave integers alone."""
    return tuple(
        np.asarray(v).astype(dtype) if is_float(np.asarray(v).dtype) else v
        for v in values
    )


def vdot(a: Any, b: Any) -> Any:
    """Return the inner product <a, b>, the sum of elementwise products."""
    return jnp.sum(a * b)


def fd_step(primals: Sequence[np.ndarray], tangents: Sequence[np.ndarray]) -> float:
    """Choose the central-difference step from the scale of the inputs and tangents."""
    x_scale = max([1.0] + [float(np.max(np.abs(p), initial=0.0)) for p in primals])
    h_scale = max([1.0] + [float(np.max(np.abs(t), initial=0.0)) for t in tangents])
    return FD_STEP * x_scale / h_scale


def _shift(primals, tangents, argnums, offset):
    moved = list(primals)
    for i, tangent in zip(argnums, tangents):
        moved[i] = primals[i] + offset * tangent
    return moved


def difference_rounding(fn: Callable, primals, tangents, argnums, cotangent, step):
    """Bound the rounding error of `directional_differences` at ``step``, traced inside
    a jitted kernel; at a step s it is this bound times step / s.

    Each evaluation f(X + s H) has rounding error about eps * <|U|, m>, where m is the
    running error magnitude (see `vjpcheck._magnitudes`) from inputs rounded once when
    shifted. The steps are tiny, so m is evaluated once, at X with input magnitudes
    |X| + step |H|; dividing by 2 step turns it into the error of the quotient.
    """
    sizes = [
        jnp.abs(primals[i]) + step * jnp.abs(tangents[argnums.index(i)]) if i in argnums else None
        for i in range(len(primals))
    ]
    _, size = magnitudes.evaluate(fn, list(primals), sizes)
    eps = jnp.finfo(cotangent.dtype).eps
    return 2 * eps * vdot(jnp.abs(cotangent), size) / step


def directional_differences(fn: Callable, primals, tangents, argnums, cotangent, steps):
    """<U, (f(X + s H) - f(X - s H)) / (2 s)> for each step s in ``steps``.

    The steps run through jax.lax.map, so fn is traced once and the evaluations run
    one after another, in the memory of one.
    """

    def quotient(step):
        ahead = fn(*_shift(primals, tangents, argnums, step))
        behind = fn(*_shift(primals, tangents, argnums, -step))
        return vdot(cotangent, (ahead - behind) / (2 * step))

    return jax.lax.map(quotient, steps)


# ----------------------------------------------------------------------------------
# Tolerances and comparisons


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """The bound |obtained - expected| <= rtol * scale + atol, and where it came from."""

    rtol: float
    atol: float
    origin: str

    def bound(self, scale: np.ndarray) -> np.ndarray:
        return self.atol + self.rtol * scale

    def describe(self) -> str:
        return (
            f"|obtained - expected| <= {self.rtol:.3g} * scale + {self.atol:.3g}, "
            f"where scale is the magnitude of the terms behind each element ({self.origin})"
        )


def relative_error(approx: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> float:
    """Largest |approx - truth| / scale over the elements with a nonzero scale."""
    approx = np.asarray(approx, np.float64)
    if approx.size == 0 or not np.all(np.isfinite(approx)):
        return 0.0
    err = np.abs(approx - truth)
    positive = scale > 0
    if not np.any(positive):
        return 0.0
    return float(np.max(err[positive] / scale[positive]))


def choose_tolerance(
    dtype: np.dtype,
    autodiff_error: float | None,
    *,
    measured_in: np.dtype = AUTODIFF_DTYPE,
    rtol: float | None,
    atol: float | None,
    override_origin: str,
) -> Tolerance:
    """Build the tolerance for one comparison in ``dtype`` (see the module docstring).

    ``autodiff_error`` is the relative error of JAX's own autodiff in ``measured_in``,
    or None where no autodiff was measured (no reference, or a check of the rule
    against itself), which leaves the floor.
    """
    info = jnp.finfo(dtype)
    eps = float(info.eps)
    floor = FLOOR_EPS * eps
    measured_in = np.dtype(measured_in)
    reference_eps = float(jnp.finfo(measured_in).eps)
    name = np.dtype(dtype).name
    if autodiff_error is None:
        from_autodiff, measured = 0.0, None
    else:
        from_autodiff = AUTODIFF_FACTOR * autodiff_error * eps / reference_eps
        measured = (
            f"JAX's own {measured_in.name} autodiff error on this input: "
            f"{autodiff_error / reference_eps:.2g} {measured_in.name} eps"
        )
    if from_autodiff > floor:
        origin = f"default: {AUTODIFF_FACTOR:g} x {measured}"
    elif measured is None:
        origin = f"default: floor of {FLOOR_EPS:g} {name} eps"
    else:
        origin = f"default: floor of {FLOOR_EPS:g} {name} eps; {measured}"
    # Below smallest_normal / eps, an absolute error of one smallest normal, which an
    # underflow to zero makes, exceeds one epsilon of relative error.
    underflow = float(info.smallest_normal) / eps
    default = Tolerance(rtol=max(floor, from_autodiff), atol=underflow, origin=origin)
    if rtol is None and atol is None:
        return default
    return Tolerance(
        rtol=default.rtol if rtol is None else rtol,
        atol=default.atol if atol is None else atol,
        origin=override_origin,
    )


@dataclasses.dataclass
class Comparison:
    """Elementwise comparison of an obtained array with the expected one."""

    obtained: np.ndarray
    expected: np.ndarray
    bound: np.ndarray
    mismatched: np.ndarray

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.mismatched))

    @property
    def error(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            err = np.abs(self.obtained - self.expected)
        return np.where(np.isfinite(err), err, np.inf)

    @property
    def worst_ratio(self) -> float:
        """Largest error-to-bound ratio; 1 means exactly at the tolerance."""
        if self.obtained.size == 0:
            return 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.bound > 0, self.error / self.bound, np.where(self.error > 0, np.inf, 0.0))
        return float(np.max(ratio))


def compare(obtained: Any, expected: Any, bound: np.ndarray) -> Comparison:
    """Compare elementwise; a non-finite obtained value never matches (NaN != NaN)."""
    obtained = np.asarray(obtained, np.float64)
    expected = np.asarray(expected, np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(obtained - expected)
        mismatched = ~(err <= bound) | ~np.isfinite(obtained)
    return Comparison(obtained=obtained, expected=expected, bound=np.broadcast_to(bound, obtained.shape), mismatched=mismatched)
