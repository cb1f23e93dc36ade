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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names and the modules that define them. Each module loads on the first
# access to one of its names, so that `import vjpcheck`, which pytest runs when it
# loads vjpcheck's plugin, does not import JAX. JAX reads settings such as
# JAX_ENABLE_X64 and JAX_PLATFORMS from the environment when it is imported, and a
# conftest.py that sets them must run first.
_EXPORTS = {
    "Chain": "vjpcheck._chains",
    "chain": "vjpcheck._chains",
    "CheckReport": "vjpcheck._check",
    "PropertyResult": "vjpcheck._check",
    "check": "vjpcheck._check",
    "check_report": "vjpcheck._check",
    "InvalidSpec": "vjpcheck._errors",
    "RuleMismatch": "vjpcheck._errors",
    "VjpcheckError": "vjpcheck._errors",
    "PROPERTIES": "vjpcheck._properties",
    "Registry": "vjpcheck._rules",
    "Rule": "vjpcheck._rules",
    "default_registry": "vjpcheck._rules",
    "register": "vjpcheck._rules",
    "rule": "vjpcheck._rules",
    "array_strategy": "vjpcheck._specs",
    "away_from": "vjpcheck._specs",
    "elements": "vjpcheck._specs",
    "index": "vjpcheck._specs",
    "positive": "vjpcheck._specs",
    "probability": "vjpcheck._specs",
    "real": "vjpcheck._specs",
    "spd": "vjpcheck._specs",
    "static": "vjpcheck._specs",
    "unit_vector": "vjpcheck._specs",
    "tree_signature": "vjpcheck._trees",
}

if TYPE_CHECKING:
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
    from vjpcheck._specs import away_from as away_from
    from vjpcheck._specs import elements as elements
    from vjpcheck._specs import index as index
    from vjpcheck._specs import positive as positive
    from vjpcheck._specs import probability as probability
    from vjpcheck._specs import real as real
    from vjpcheck._specs import spd as spd
    from vjpcheck._specs import static as static
    from vjpcheck._specs import unit_vector as unit_vector
    from vjpcheck._trees import tree_signature as tree_signature

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
    "away_from",
    "chain",
    "check",
    "check_report",
    "default_registry",
    "elements",
    "index",
    "positive",
    "probability",
    "real",
    "register",
    "rule",
    "spd",
    "static",
    "tree_signature",
    "unit_vector",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines a public name on first access, and return it."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vjpcheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
