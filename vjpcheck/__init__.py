"""Property-based tests for hand-written reverse-mode (VJP) rules in JAX.

>>> import jax.numpy as jnp
>>> import vjpcheck as vc
>>> @vc.rule("(h,d),(d),(h)->(h)", data="x")
... def linear(W, x, b):
...     return W @ x + b
>>> @linear.vjp
... def _(W, x, b, out, g):
...     return jnp.outer(g, x), W.T @ g, g
>>> report = vc.check(linear)  # doctest: +SKIP
"""

from vjpcheck._chains import Chain as Chain
from vjpcheck._chains import chain as chain
from vjpcheck._check import CheckReport as CheckReport
from vjpcheck._check import PropertyResult as PropertyResult
from vjpcheck._check import check as check
from vjpcheck._check import check_report as check_report
from vjpcheck._errors import InvalidSpec as InvalidSpec
from vjpcheck._errors import RuleMismatch as RuleMismatch
from vjpcheck._errors import VjpcheckError as VjpcheckError
from vjpcheck._properties import PROPERTIES as PROPERTIES
from vjpcheck._rules import Registry as Registry
from vjpcheck._rules import Rule as Rule
from vjpcheck._rules import default_registry as default_registry
from vjpcheck._rules import register as register
from vjpcheck._rules import rule as rule
from vjpcheck._specs import array_strategy as array_strategy
from vjpcheck._specs import elements as elements
from vjpcheck._specs import index as index
from vjpcheck._specs import positive as positive
from vjpcheck._specs import real as real

__version__ = "0.1.0"

__all__ = [
    "PROPERTIES",
    "Chain",
    "CheckReport",
    "InvalidSpec",
    "PropertyResult",
    "Registry",
    "Rule",
    "RuleMismatch",
    "VjpcheckError",
    "array_strategy",
    "chain",
    "check",
    "check_report",
    "default_registry",
    "elements",
    "index",
    "positive",
    "real",
    "register",
    "rule",
]
