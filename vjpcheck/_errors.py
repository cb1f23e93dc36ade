"""Exception classes.

Misuse (a bad signature or spec) and a wrong rule are different failures, so they get
different classes: `InvalidSpec` is a usage error and `RuleMismatch` is an
`AssertionError`, which test runners report as a failed test.
"""


class VjpcheckError(Exception):
    """Base class of every exception that vjpcheck raises on purpose."""


class InvalidSpec(VjpcheckError, ValueError):
    """A signature, spec or option is invalid; the message names the value and the fix."""


class RuleMismatch(VjpcheckError, AssertionError):
    """A VJP rule violated a property; the message is the failure report."""
