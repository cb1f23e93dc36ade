"""Name the usual mistake that explains a mismatching cotangent, when one does.

Each detector is a small function that takes the evidence about one mismatching input
and returns a sentence, or None when its pattern does not fit. `diagnose` tries them
in order and returns the first sentence, or "no known pattern".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

NO_PATTERN = "no known pattern."
# Relative agreement that counts as "equal" for a pattern: far looser than the
# tolerance, because the pattern only has to explain the mismatch, not pass it.
PATTERN_RTOL = 1e-3


@dataclasses.dataclass
class Evidence:
    """The evidence about one input whose cotangent mismatches."""

    name: str
    obtained: np.ndarray
    expected: np.ndarray
    # Expected cotangents of the other real inputs, by name, for swaps.
    others: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # The expected cotangent for an all-ones output cotangent, for an ignored cotangent.
    for_ones: np.ndarray | None = None
    # The expected cotangent if only the Jacobian's diagonal were used.
    diagonal_only: np.ndarray | None = None
    # Sizes of the named core dimensions, for a mean taken where a sum belongs.
    sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # The output cotangent, for a sum over a batch axis that is missing.
    cotangent: np.ndarray | None = None


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Return whether a and b agree to `PATTERN_RTOL` of their scale (two zero arrays agree)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    scale = max(float(np.max(np.abs(b), initial=0.0)), float(np.max(np.abs(a), initial=0.0)))
    if scale == 0.0:
        return True
    return float(np.max(np.abs(a - b))) <= PATTERN_RTOL * scale


def _nonzero(array: np.ndarray) -> bool:
    return bool(np.any(np.asarray(array) != 0))


def zero(e: Evidence) -> str | None:
    if _nonzero(e.expected) and not _nonzero(e.obtained):
        return f"the cotangent for {e.name!r} is zero everywhere."
    return None


def sign_flipped(e: Evidence) -> str | None:
    if _nonzero(e.expected) and close(e.obtained, -e.expected):
        return f"sign flipped: the cotangent for {e.name!r} is minus the expected one."
    return None


def transposed(e: Evidence) -> str | None:
    if e.expected.ndim == 2 and e.expected.shape[0] == e.expected.shape[1] and not close(e.expected, e.expected.T):
        if close(e.obtained, e.expected.T):
            return f"the cotangent for {e.name!r} is the transpose of the expected one."
    return None


def swapped(e: Evidence) -> str | None:
    for other, value in e.others.items():
        if _nonzero(value) and not close(value, e.expected) and close(e.obtained, value):
            return f"the cotangent returned for {e.name!r} is the one expected for {other!r}: cotangents of two inputs swapped."
    return None


def ignored_cotangent(e: Evidence) -> str | None:
    if e.for_ones is not None and _nonzero(e.for_ones) and not close(e.for_ones, e.expected) and close(e.obtained, e.for_ones):
        return (
            f"the cotangent for {e.name!r} is what an all-ones output cotangent would give: "
            "the rule ignores the incoming cotangent (or its scale)."
        )
    return None


def diagonal_only(e: Evidence) -> str | None:
    if (
        e.diagonal_only is not None
        and _nonzero(e.diagonal_only)
        and not close(e.diagonal_only, e.expected)
        and close(e.obtained, e.diagonal_only)
    ):
        return (
            f"the cotangent for {e.name!r} uses only the diagonal of the Jacobian: the "
            "off-diagonal terms (how each output depends on the other inputs) are missing."
        )
    return None


def extra_sum(e: Evidence) -> str | None:
    for axis in range(e.expected.ndim):
        if e.expected.shape[axis] < 2:
            continue
        summed = np.broadcast_to(np.sum(e.expected, axis=axis, keepdims=True), e.expected.shape)
        if _nonzero(summed) and not close(summed, e.expected) and close(e.obtained, summed):
            return f"the cotangent for {e.name!r} is summed over axis {axis} and broadcast back: an extra sum over that axis."
    return None


def constant_factor(e: Evidence) -> str | None:
    if not _nonzero(e.expected):
        return None
    flat_expected = e.expected.ravel().astype(np.float64)
    factor = float(np.dot(e.obtained.ravel(), flat_expected) / np.dot(flat_expected, flat_expected))
    if not np.isfinite(factor) or abs(factor - 1) <= PATTERN_RTOL or factor == 0:
        return None
    if not close(e.obtained, factor * e.expected):
        return None
    for dim, size in e.sizes.items():
        if size > 1 and abs(factor * size - 1) <= PATTERN_RTOL:
            return (
                f"the cotangent for {e.name!r} is the expected one divided by {size}, the size "
                f"of dimension {dim!r}: a mean where the sum belongs."
            )
        if size > 1 and abs(factor - size) <= PATTERN_RTOL * size:
            return (
                f"the cotangent for {e.name!r} is the expected one times {size}, the size of "
                f"dimension {dim!r}: an extra sum, or a sum where the mean belongs."
            )
    return f"off by a constant factor: the cotangent for {e.name!r} is {factor:.6g} times the expected one."


def missing_sum(e: Evidence) -> str | None:
    """A bias-like cotangent that should sum the output cotangent over a batch axis but
    returns one slice of it. (When the sum is missing altogether the shape is wrong,
    which `shape_hint` explains.)"""
    if e.cotangent is None:
        return None
    u = np.asarray(e.cotangent, np.float64)
    for axis in range(u.ndim):
        if u.shape[axis] < 2 or np.delete(np.array(u.shape), axis).tolist() != list(e.expected.shape):
            continue
        if not close(np.sum(u, axis=axis), e.expected):
            continue
        for i in range(u.shape[axis]):
            if close(e.obtained, np.take(u, i, axis=axis)):
                return (
                    f"the cotangent for {e.name!r} is slice {i} of the output cotangent along "
                    f"axis {axis}, where the sum over that axis belongs: a missing sum over a batch axis."
                )
    return None


# The more specific patterns come first: a missing sum can also leave zeros.
DETECTORS: Sequence[Callable[[Evidence], str | None]] = (
    missing_sum,
    sign_flipped,
    transposed,
    swapped,
    ignored_cotangent,
    diagonal_only,
    extra_sum,
    constant_factor,
    zero,
)


def diagnose(evidence: Evidence) -> str:
    """Return the first matching pattern's sentence, or `NO_PATTERN`."""
    return find_pattern(evidence)[0]


def find_pattern(evidence: Evidence) -> tuple[str, Callable[[Evidence], str | None] | None]:
    """Return the first matching pattern's sentence and its detector, or
    (`NO_PATTERN`, None)."""
    for detector in DETECTORS:
        sentence = detector(evidence)
        if sentence:
            return sentence, detector
    return NO_PATTERN, None


def confirm(first: Evidence, dense: Evidence | None) -> str:
    """Return the diagnosis of ``first``, checked against ``dense``, the same mistake on a
    random, slightly larger input with no zeros.

    A shrunk example is small and sparse, so a wrong pattern can fit it by chance: an
    all-zero slice makes a missing batch sum look like a zero cotangent, and two
    elements are always proportional. Where the dense input names another pattern, that
    one is the diagnosis; where it fits none, neither is named.
    """
    sentence, detector = find_pattern(first)
    if detector is None or dense is None:
        return sentence
    dense_sentence, dense_detector = find_pattern(dense)
    if dense_detector is detector:
        return sentence
    if dense_detector is None:
        return NO_PATTERN
    return f"{dense_sentence} (This shows on a larger random input; the example above is too small to tell.)"


def shape_hint(obtained_shape: tuple[int, ...], expected_shape: tuple[int, ...]) -> str | None:
    """Explain a cotangent of the wrong shape when a usual mistake explains it."""
    if len(obtained_shape) == 2 and obtained_shape[::-1] == tuple(expected_shape) and obtained_shape != tuple(expected_shape):
        return "It has the transposed shape: is the cotangent transposed?"
    extra = len(obtained_shape) - len(expected_shape)
    if extra > 0 and tuple(obtained_shape[extra:]) == tuple(expected_shape):
        axes = ", ".join(str(a) for a in range(extra))
        noun = "axis" if extra == 1 else "axes"
        return f"Summing it over {noun} {axes} gives the input's shape: is a sum over a batch or broadcast axis missing?"
    if extra == 0 and len(obtained_shape) == len(expected_shape):
        differing = [a for a, (o, x) in enumerate(zip(obtained_shape, expected_shape)) if o != x]
        if len(differing) == 1 and expected_shape[differing[0]] == 1:
            return f"Summing it over axis {differing[0]} with keepdims gives the input's shape: is a sum over a broadcast axis missing?"
    return None
