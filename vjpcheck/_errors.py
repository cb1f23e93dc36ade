"""Exception classes.

Misuse (a bad signature or spec) and a wrong rule are different failures, so they get
different classes: `InvalidSpec` is a usage error and `RuleMismatch` is an
`AssertionError`, which test runners report as a failed test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# While a command collects rules from a module, a declaration that raises InvalidSpec
# becomes a placeholder that reports the error, so that the rest of the module still
# loads and is checked.
_collecting = False


@contextlib.contextmanager
def collecting() -> Iterator[None]:
    """Defer declaration errors to placeholders while the block runs."""
    global _collecting
    previous, _collecting = _collecting, True
    try:
        yield
    finally:
        _collecting = previous


def is_collecting() -> bool:
    """Return whether declaration errors are deferred (see `collecting`)."""
    return _collecting


class VjpcheckError(Exception):
    """Base class of every exception that vjpcheck raises on purpose."""


class InvalidSpec(VjpcheckError, ValueError):
    """A signature, spec or option is invalid; the message names the value and the fix."""


class RuleMismatch(VjpcheckError, AssertionError):
    """A VJP rule violated a property; the message is the failure report."""
