"""Explain an exception that a rule, its op or its reference raised during a check."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from types import CodeType

import jax

from vjpcheck._rules import Rule

# Frames from these packages are the machinery around the user's code, not the code.
_MACHINERY = tuple(
    os.path.dirname(module.__file__) + os.sep
    for module in (jax, __import__("hypothesis"), __import__("vjpcheck"))
)
_TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)
_SHAPE_WORDS = ("shape", "broadcast", "dimension", "incompatible")


def describe_error(error: BaseException, rule: Rule, property_name: str, dtype_name: str) -> str:
    """Return a report for an exception raised while checking ``rule``.

    It names the function that raised (the rule, its op, or its reference), shows the
    user's own frames of the traceback, and explains errors whose cause is known.
    """
    culprit = _culprit(error, rule)
    lines = [
        f"Rule {rule.name!r} ({rule.location}): {culprit} raised an error during property "
        f"{property_name!r} in {dtype_name}.",
        f"{type(error).__name__}: {_first_paragraph(error)}",
    ]
    frames = _user_frames(error)
    if frames:
        lines.append("Traceback (the user's frames, innermost last):")
        lines += frames
    advice = _advice(error, rule, culprit)
    if advice:
        lines.append(advice)
    return "\n".join(lines)


def _first_paragraph(error: BaseException) -> str:
    # JAX appends a note on filtered frames after a line of dashes, and names the
    # vjpcheck kernel it was tracing; neither helps the reader.
    text = str(error).split("\n--------------------")[0]
    lines = [line for line in text.splitlines() if not line.startswith("The error occurred while tracing")]
    return "\n".join(lines).strip()


def _user_frames(error: BaseException) -> list[str]:
    frames = [
        frame for frame in traceback.extract_tb(error.__traceback__)
        if not os.path.abspath(frame.filename).startswith(_MACHINERY)
        and "site-packages" not in frame.filename
        and not frame.filename.startswith("<")
    ]
    lines = []
    for frame in frames[-6:]:
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    return lines


def _codes(functions: Iterable[Callable | None]) -> set[CodeType]:
    codes = set()
    for fn in functions:
        fn = getattr(fn, "fun", fn)
        code = getattr(fn, "__code__", None)
        if code is not None:
            codes.add(code)
    return codes


def _rule_functions(rule: Rule) -> list[Callable | None]:
    links = getattr(rule, "links", (rule,))
    functions: list[Callable | None] = []
    for link in links:
        functions += link.backward_functions()
    return functions


def _reference_functions(rule: Rule) -> list[Callable | None]:
    links = getattr(rule, "links", (rule,))
    return [link.reference for link in links if link.reference is not getattr(link, "primal", None)]


def _primal_functions(rule: Rule) -> list[Callable | None]:
    return [link.primal for link in getattr(rule, "links", (rule,))]


def _culprit(error: BaseException, rule: Rule) -> str:
    """Name what raised: the backward rule, the op, or the reference."""
    codes_in_traceback = set()
    tb = error.__traceback__
    while tb is not None:
        codes_in_traceback.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    if codes_in_traceback & _codes(_rule_functions(rule)):
        return "its backward rule"
    if codes_in_traceback & _codes(_reference_functions(rule)):
        return "its reference"
    if codes_in_traceback & _codes(_primal_functions(rule)):
        return "its op"
    return "the check"


def _advice(error: BaseException, rule: Rule, culprit: str) -> str | None:
    if culprit == "its reference":
        return (
            "JAX could not trace or differentiate the reference. Write it with jax.numpy, "
            "or pass reference=None to check the rule against finite differences alone."
        )
    if isinstance(error, _TRACER_ERRORS):
        return (
            "vjpcheck runs the rule under jax.jit, as JAX does inside a compiled model, "
            "and there arrays are traced: the code used one as a Python bool, int or "
            "NumPy array (an `if` on an array, int(x), np.asarray(x)). Use jnp.where, "
            "jax.lax.cond or jax.numpy functions instead."
        )
    message = str(error).lower()
    if "indexer must have integer" in message or "indices must be integers" in message:
        return (
            "An argument is used as an index but was drawn as a real array. Declare it "
            "with specs={'name': vjpcheck.index('n')}, where n is the dimension it indexes."
        )
    # JAX raises TypeError or ValueError for shapes that do not fit. Other errors that
    # mention a dimension, such as a NotImplementedError about vmap, are not about shapes.
    shape_error = isinstance(error, (TypeError, ValueError, IndexError))
    if culprit == "its op" and shape_error and any(word in message for word in _SHAPE_WORDS):
        return (
            f"The shapes may not match the signature {rule.signature.text!r}: vjpcheck "
            "gives dimensions with the same name the same size and, where it can, "
            "dimensions with different names different sizes. Correct the signature, "
            "or the op."
        )
    return None
