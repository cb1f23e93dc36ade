"""Rule objects, the decorators that build them, and the registry they join."""

from __future__ import annotations

import copy
import difflib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vjpcheck._errors import InvalidSpec, is_collecting
from vjpcheck._specs import (
    BrokenSpec, Index, Real, Signature, Spec, Static, format_core_shape, short_path, to_spec,
)
from vjpcheck._trees import TreeSignature

SUPPORTED_DTYPES = (
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(jnp.bfloat16),
    np.dtype(np.float16),
)
DEFAULT_DTYPES = SUPPORTED_DTYPES[:2]

# Marks "no reference given" apart from reference=None, which declares that there is none.
_DEFAULT = object()


class Registry:
    """An ordered collection of rules, keyed by name.

    Every rule joins a registry when it is declared, `default_registry` unless the
    declaration names another. The ``composition`` property draws chains from it.
    """

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}

    def add(self, rule: Rule | BrokenRule) -> None:
        existing = self._rules.get(rule.name)
        if isinstance(rule, BrokenRule) and existing is not None and existing.location != rule.location:
            self._rules[f"{rule.name} ({rule.location})"] = rule
            return
        if existing is not None and existing.location != rule.location:
            raise InvalidSpec(
                f"A rule named {rule.name!r} is already registered from "
                f"{existing.location}; the one at {rule.location} needs another name. "
                "Pass name='...' to vjpcheck.rule() or vjpcheck.register()."
            )
        # Re-declaring from the same place (a module imported twice) replaces the rule.
        self._rules[rule.name] = rule

    def remove(self, rule: Rule) -> None:
        if self._rules.get(rule.name) is rule:
            del self._rules[rule.name]

    def get(self, name: str) -> Rule:
        return self._rules[name]

    def __iter__(self) -> Iterator[Rule]:
        return iter(list(self._rules.values()))

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule: object) -> bool:
        return any(r is rule for r in self._rules.values())

    def __repr__(self) -> str:
        return f"Registry({list(self._rules)})"


default_registry = Registry()

class BrokenRule:
    """A declaration that raised `InvalidSpec` while a command collected rules.

    It accepts the decorators that usually follow a declaration, so the module goes on
    loading, and it raises the stored error when called or checked.
    """

    def __init__(self, name: str, location: str, error: InvalidSpec, registry: Registry | None) -> None:
        self.name = name
        self.location = location
        self.error = error
        self.registry = registry if isinstance(registry, Registry) else default_registry
        self.registry.add(self)

    def vjp(self, fn: Callable) -> Callable:
        return fn

    fwd = bwd = vjp

    def defvjp(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def __repr__(self) -> str:
        return f"<vjpcheck broken rule {self.name} at {self.location}: {self.error}>"


def deferred(declare: Callable[[], Any], name: str, location: str, registry: Registry | None) -> Any:
    """Run ``declare``; while collecting, turn an InvalidSpec into a BrokenRule."""
    try:
        return declare()
    except InvalidSpec as error:
        if not is_collecting():
            raise
        return BrokenRule(name, location, error, registry)


class Rule:
    """An op with a hand-written VJP rule, the reference it is checked against, and specs.

    Calling a rule calls the op through `jax.custom_vjp`, so `jax.grad`, `jax.vjp` and
    `jax.jit` use the hand-written rule. Build one with `rule` or `register`.
    """

    def __init__(
        self,
        primal: Callable,
        signature: str | Signature,
        *,
        kind: str,
        name: str | None = None,
        specs: Mapping[str, Any] | None = None,
        reference: Any = _DEFAULT,
        kinks: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
        data: str | None = None,
        output: Spec | None = None,
        dtypes: Sequence[Any] | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        registry: Registry | None = None,
        location: str | None = None,
        arg_names: Sequence[str] | None = None,
        second_order: bool = False,
        subgradients: bool = False,
    ) -> None:
        self.primal = primal
        # Whether to draw inputs on declared kink points and accept any cotangent between
        # the one-sided derivatives there, instead of keeping inputs off the kinks.
        self.subgradients = bool(subgradients)
        # Whether the backward rule is meant to be differentiable itself.
        self.second_order = bool(second_order)
        self.kind = kind
        self.name = name or getattr(primal, "__name__", None) or type(primal).__name__
        if not isinstance(self.name, str) or not self.name:
            raise InvalidSpec(f"name={name!r}: a rule's name must be a non-empty string.")
        self.signature = signature if isinstance(signature, Signature) else Signature.parse(signature)
        self.location = location or _definition_site(primal)
        specs = dict(specs or {})
        statics = {key: value for key, value in specs.items() if isinstance(value, Static)}
        # Positions of the static arguments among all positional parameters; the array
        # arguments are the others, in order, and the signature describes only them.
        self.all_names = tuple(arg_names) if arg_names else self._infer_arg_names(len(statics))
        unknown_statics = sorted(set(statics) - set(self.all_names))
        if unknown_statics:
            raise InvalidSpec(
                f"rule {self.name!r}: static specs name {unknown_statics}, which are not "
                f"parameters; the parameters are {list(self.all_names)}."
            )
        self.static_specs = {self.all_names.index(key): value for key, value in statics.items()}
        self.arg_names = tuple(n for i, n in enumerate(self.all_names) if i not in self.static_specs)
        self._static_values: tuple[Any, ...] = ()
        self._bound: dict[Any, Rule] = {}
        self.specs = self._build_specs({k: v for k, v in specs.items() if k not in statics})
        self.data_index = self._find_data_index(data)
        self.kinks = self._build_kinks(kinks)
        self.output_spec = output if output is not None else Real()
        if not isinstance(self.output_spec, Spec):
            raise InvalidSpec(
                f"rule {self.name!r}: output={output!r} must be a spec such as "
                "vjpcheck.positive(), describing the values the op returns."
            )
        self.dtypes = _normalise_dtypes(dtypes, self.name)
        self.rtol = _check_tolerance("rtol", rtol, self.name)
        self.atol = _check_tolerance("atol", atol, self.name)
        self.reference = self._resolve_reference(reference)
        self._vjp: Callable | None = None
        self._fwd: Callable | None = None
        # A backward function that cannot take the arguments vjpcheck passes it.
        self._arity_problem: str | None = None
        self._bwd: Callable | None = None
        self.function: Callable = primal
        self.registry = registry if isinstance(registry, Registry) else default_registry
        self.__doc__ = getattr(primal, "__doc__", None)
        self.__wrapped__ = primal
        self.registry.add(self)

    # -- declaration -------------------------------------------------------------

    def _infer_arg_names(self, n_static: int = 0) -> tuple[str, ...]:
        statics = f" and {n_static} static argument(s)" if n_static else ""
        return parameter_names(
            self.primal,
            len(self.signature.inputs) + n_static,
            f"rule {self.name!r}: signature {self.signature.text!r} declares "
            f"{len(self.signature.inputs)} array input(s){statics}",
            "Write one parenthesised group per array argument, and give each static "
            "argument a vjpcheck.static(...) spec.",
        )

    def _build_specs(self, specs: Mapping[str, Any] | None) -> tuple[Spec, ...]:
        specs = dict(specs or {})
        unknown = sorted(set(specs) - set(self.arg_names))
        if unknown:
            raise InvalidSpec(
                f"rule {self.name!r}: specs name {unknown}, which are not arguments; "
                f"the arguments are {list(self.arg_names)}."
            )
        built = []
        for name, core in zip(self.arg_names, self.signature.inputs):
            where = f"rule {self.name!r}: specs[{name!r}]"
            spec = to_spec(specs.get(name, Real()), where)
            spec.validate_for(core, where)
            if isinstance(spec, Index) and spec.dim not in self.signature.dim_names:
                raise InvalidSpec(
                    f"rule {self.name!r}: specs[{name!r}] = index({spec.dim!r}) names a "
                    f"dimension that signature {self.signature.text!r} does not have; "
                    f"use one of {list(self.signature.dim_names)}."
                )
            built.append(spec)
        return tuple(built)

    def _find_data_index(self, data: str | None) -> int:
        if data is None:
            for i, spec in enumerate(self.specs):
                if spec.kind == "float":
                    return i
            raise InvalidSpec(
                f"rule {self.name!r} has no real-valued input, so there is nothing to "
                "differentiate; give at least one argument a real-valued spec."
            )
        if data not in self.arg_names:
            raise InvalidSpec(
                f"rule {self.name!r}: data={data!r} is not an argument; the arguments "
                f"are {list(self.arg_names)}."
            )
        index = self.arg_names.index(data)
        if self.specs[index].kind != "float":
            raise InvalidSpec(
                f"rule {self.name!r}: data={data!r} is an integer input; the data input "
                "must be real-valued because it receives the previous rule's output."
            )
        return index

    def _build_kinks(self, kinks: Any) -> dict[int, tuple[float, ...]]:
        # Inputs whose elements must not tie with each other (max, sort, top-k).
        self.ties: set[int] = set()
        if kinks is None:
            return {}
        if not isinstance(kinks, Mapping):
            kinks = {self.arg_names[self.data_index]: kinks}
        built = {}
        for name, points in kinks.items():
            if name not in self.arg_names:
                raise InvalidSpec(
                    f"rule {self.name!r}: kinks name {name!r}, which is not an argument; "
                    f"the arguments are {list(self.arg_names)}."
                )
            if isinstance(points, (int, float, str)):
                points = (points,)
            if "ties" in points:
                self.ties.add(self.arg_names.index(name))
                points = tuple(p for p in points if p != "ties")
                if not points:
                    continue
            if any(isinstance(p, str) for p in points):
                raise InvalidSpec(
                    f"rule {self.name!r}: kinks[{name!r}] = {kinks[name]!r}: use numbers, the "
                    "points where the op is not differentiable, or 'ties' for an op such as "
                    "max that is not differentiable where two elements are equal."
                )
            values = tuple(float(p) for p in points)
            if not all(math.isfinite(p) for p in values):
                raise InvalidSpec(
                    f"rule {self.name!r}: kinks[{name!r}] = {points!r} must be finite "
                    "numbers, the points where the op is not differentiable."
                )
            built[self.arg_names.index(name)] = values
        return built

    def _resolve_reference(self, reference: Any) -> Callable | None:
        if reference is None:
            return None
        if reference is not _DEFAULT:
            if not callable(reference):
                raise InvalidSpec(
                    f"rule {self.name!r}: reference={reference!r} is not callable; pass "
                    "a function with the same arguments as the op, or None."
                )
            return reference
        if isinstance(self.primal, (jax.custom_vjp, jax.custom_jvp)):
            return self.primal.fun
        if self.kind == "autodiff":
            raise InvalidSpec(
                f"{self.name!r} is neither a jax.custom_vjp nor a jax.custom_jvp function, "
                "so its reference would be itself, and comparing JAX's derivative of it "
                "with itself checks nothing. Pass reference=<a plain implementation> to "
                "compare against, or reference=None to rely on finite differences."
            )
        return self.primal

    # -- the backward rule -------------------------------------------------------

    def vjp(self, fn: Callable) -> Callable:
        """Decorator: set the rule ``fn(*primals, out, g) -> one cotangent per input``."""
        self._require_kind("vjp", "@rule.vjp")
        if self._vjp is not None or self._fwd is not None:
            raise InvalidSpec(
                f"rule {self.name!r} already has a backward rule; define @{self.name}.vjp "
                "once, or @fwd and @bwd, not both."
            )
        self._vjp = fn
        self.note_arity(fn, "vjp", [*self.all_names, "out", "g"])
        self._build_function()
        return fn

    def fwd(self, fn: Callable) -> Callable:
        """Decorator: set the forward pass ``fn(*primals) -> (out, residuals)``."""
        self._require_kind("vjp", "@rule.fwd")
        if self._vjp is not None:
            raise InvalidSpec(f"rule {self.name!r} already has @vjp; use @vjp or @fwd/@bwd.")
        self._fwd = fn
        self.note_arity(fn, "fwd", list(self.all_names))
        self._build_function()
        return fn

    def bwd(self, fn: Callable) -> Callable:
        """Decorator: set the backward pass ``fn(residuals, g) -> one cotangent per input``."""
        self._require_kind("vjp", "@rule.bwd")
        if self._vjp is not None:
            raise InvalidSpec(f"rule {self.name!r} already has @vjp; use @vjp or @fwd/@bwd.")
        self._bwd = fn
        self.note_arity(fn, "bwd", [*self.static_names, "residuals", "g"])
        self._build_function()
        return fn

    def note_arity(self, fn: Callable, form: str, arguments: list[str]) -> None:
        """Record a problem, reported when the rule is checked, if ``fn`` cannot take
        one positional argument for each name in ``arguments``."""
        try:
            inspect.signature(fn).bind(*arguments)
        except ValueError:  # no signature to inspect, as for some builtins
            return
        except TypeError as error:
            self._arity_problem = (
                f"rule {self.name!r}: its @{self.name}.{form} function "
                f"{getattr(fn, '__name__', repr(fn))}{inspect.signature(fn)} cannot be called "
                f"as {form}({', '.join(arguments)}): {error}. Give it one parameter per "
                "name in that call."
            )

    @property
    def bound_statics(self) -> str:
        """The static values this rule is bound to, as "slope=0.1", or ""."""
        if not self._static_values:
            return ""
        return ", ".join(f"{n}={v!r}" for n, v in zip(self.static_names, self._static_values))

    def defvjp(self, fwd: Callable, bwd: Callable, **options: Any) -> None:
        """Call ``defvjp`` on the wrapped `jax.custom_vjp`, for ``@rule`` stacked on one."""
        if self.kind != "custom_vjp":
            raise InvalidSpec(
                f"rule {self.name!r} does not wrap a jax.custom_vjp; use @{self.name}.vjp, "
                f"or @{self.name}.fwd and @{self.name}.bwd."
            )
        self.primal.defvjp(fwd, bwd, **options)

    def _require_kind(self, kind: str, what: str) -> None:
        if self.kind != kind:
            raise InvalidSpec(
                f"rule {self.name!r} wraps an existing differentiable function, which "
                f"already has its backward rule; {what} applies only to rules declared "
                "on a plain function."
            )

    def _build_function(self) -> None:
        statics = tuple(sorted(self.static_specs))
        if self._vjp is not None:
            vjp, primal = self._vjp, self.primal

            def fwd(*args):
                out = primal(*args)
                arrays = tuple(a for i, a in enumerate(args) if i not in self.static_specs)
                return out, (arrays, out)

            def bwd(*args):
                # JAX passes the static arguments first, then the residuals and g.
                static_values, (arrays, out), g = args[: len(statics)], args[-2], args[-1]
                return vjp(*_interleave(arrays, dict(zip(statics, static_values))), out, g)

        elif self._fwd is not None and self._bwd is not None:
            fwd, bwd = self._fwd, self._bwd
        else:
            return
        function = jax.custom_vjp(self.primal, nondiff_argnums=statics)
        function.defvjp(fwd, bwd)
        self.function = function

    @property
    def missing(self) -> str | None:
        """What the declaration still lacks, or None when the rule is complete."""
        if self._arity_problem:
            return self._arity_problem
        if self.kind == "custom_vjp" and self.primal.fwd is None:
            return f"rule {self.name!r} wraps a jax.custom_vjp that has no rule yet; call {self.name}.defvjp(fwd, bwd)."
        if self.kind != "vjp" or self._vjp is not None:
            return None
        if self._fwd is not None and self._bwd is not None:
            return None
        if self._fwd is None and self._bwd is None:
            return (
                f"rule {self.name!r} has no backward rule. Decorate one with "
                f"@{self.name}.vjp (receiving the primals, the output and the output "
                f"cotangent), or with @{self.name}.fwd and @{self.name}.bwd."
            )
        which = "@bwd" if self._bwd is None else "@fwd"
        return f"rule {self.name!r} has @fwd or @bwd but not both; add {which}."

    def raw_vjp(self, *primals: Any) -> tuple[Any, Callable[[Any], Any]]:
        """Run the forward pass; return the output and the hand-written backward function.

        The backward function returns exactly what the rule returns, unvalidated, so that
        the ``structure`` property can judge it.
        """
        if self.missing:
            raise InvalidSpec(self.missing)
        if self.static_specs and not self._static_values:
            raise InvalidSpec(
                f"rule {self.name!r} has static arguments {self.static_names}; bind values "
                f"first, as in {self.name}.bind({self.static_names[0]}=...)."
            )
        statics = self._static_values
        full = self._full(primals)
        if self._vjp is not None:
            out = self.primal(*full)
            return out, lambda g: self._vjp(*full, out, g)
        if self._fwd is not None:
            out, residuals = self._fwd(*full)
            return out, lambda g: self._bwd(*statics, residuals, g)
        if isinstance(self.primal, jax.custom_vjp) and not self.primal.symbolic_zeros:
            out, residuals = self.primal.fwd(*full)
            return out, lambda g: self.primal.bwd(*statics, residuals, g)
        out, pullback = jax.vjp(lambda *arrays: self.primal(*self._full(arrays)), *primals)
        return out, pullback

    # -- static arguments --------------------------------------------------------

    @property
    def static_names(self) -> list[str]:
        return [self.all_names[i] for i in sorted(self.static_specs)]

    def call_primal(self, *arrays: Any) -> Any:
        """Call the op on the array arguments, with the bound static values."""
        return self.primal(*self._full(arrays))

    def _full(self, arrays: Sequence[Any]) -> tuple[Any, ...]:
        """Return all arguments: the array arguments with the bound static values."""
        if not self._static_values:
            return tuple(arrays)
        return _interleave(arrays, dict(zip(sorted(self.static_specs), self._static_values)))

    def bind(self, **values: Any) -> Rule:
        """Return this rule with its static arguments fixed, checked as a rule of arrays.

        >>> # leaky = leaky_relu.bind(slope=0.1)
        """
        if not self.static_specs:
            if values:
                raise InvalidSpec(f"rule {self.name!r} has no static arguments to bind.")
            return self
        names = self.static_names
        if sorted(values) != sorted(names):
            raise InvalidSpec(
                f"rule {self.name!r}: bind() needs exactly the static arguments {names}, "
                f"got {sorted(values)}."
            )
        ordered = tuple(
            self.static_specs[i].checked(self.all_names[i], values[self.all_names[i]])
            for i in sorted(self.static_specs)
        )
        if ordered not in self._bound:
            self._bound[ordered] = self._bound_copy(ordered)
        return self._bound[ordered]

    def _bound_copy(self, ordered: tuple[Any, ...]) -> Rule:
        bound = copy.copy(self)
        bound._static_values = ordered
        bound._bound = {}
        reference, function = self.reference, self.function
        if reference is not None:
            bound.reference = lambda *arrays: reference(*bound._full(arrays))
        bound.function = lambda *arrays: function(*bound._full(arrays))
        return bound

    # -- conveniences ------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.missing:
            raise InvalidSpec(self.missing)
        return self.function(*args, **kwargs)

    @property
    def float_inputs(self) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.specs) if s.kind == "float")

    def input_label(self, i: int) -> str:
        """Name input ``i`` in reports, as "'W' (input 0)"."""
        return f"{self.arg_names[i]!r} (input {i})"

    def backward_functions(self) -> list[Callable | None]:
        """Return the functions that make up the backward rule, to tell in an error
        report whether the backward rule raised."""
        return [
            self._vjp, self._fwd, self._bwd,
            getattr(self.primal, "fwd", None), getattr(self.primal, "bwd", None),
        ]

    def describe_signature(self) -> str:
        args = ", ".join(
            f"{name}{format_core_shape(core)}"
            for name, core in zip(self.arg_names, self.signature.inputs)
        )
        return f"{self.name}({args}) -> {format_core_shape(self.signature.output)}"

    def __repr__(self) -> str:
        return f"<vjpcheck rule {self.name} {self.signature.text} at {self.location}>"


# ----------------------------------------------------------------------------------
# Decorators


def rule(signature: str | TreeSignature, **options: Any) -> Callable[[Callable], Rule]:
    """Declare an op and its hand-written VJP rule, to be checked by `check`.

    Args:
      signature: gufunc-style core shapes of the inputs and the output, such as
        ``"(h,d),(d),(h)->(h)"``. Differently named dimensions get different sizes.
        For arguments that are pytrees, pass a `tree_signature`; options then name
        leaves by key path, as ``"params['W']"``, or whole arguments.
      name: the rule's name in reports and the registry (default: the function's name).
      specs: a mapping from argument name to a spec (`real`, `positive`, `index`,
        `elements`, `array_strategy`) or a Hypothesis strategy of floats.
      reference: the function to differentiate with JAX as the truth (default: the
        primal itself), or None when JAX cannot differentiate it.
      kinks: points where the op is not differentiable, such as ``[0.0]`` for ReLU,
        for the data input or as a mapping from argument name to points; ``"ties"``
        marks an input whose elements must not be equal (max, sort).
      subgradients: draw inputs on the kink points too, and accept there any cotangent
        between the one-sided derivatives (for ops that act elementwise on the kinked
        input, such as ReLU and abs).
      data: the argument that receives the previous rule's output in a chain
        (default: the first real-valued argument).
      output: a spec for the output's values, such as ``positive()`` for softmax.
      dtypes: floating dtypes to check (default: float32 and float64).
      rtol, atol: tolerance overrides; see the error model in the docs.
      registry: the `Registry` to join (default: `default_registry`).
      second_order: declare that the backward rule is itself differentiable, which
        the ``second_order`` property then checks against the reference's second
        derivatives.

    Stacked on a `jax.custom_vjp` function, it registers that function's own rule.

    >>> import jax.numpy as jnp
    >>> @rule("(n)->(n)", kinks=[0.0], registry=Registry())
    ... def relu(x):
    ...     return jnp.maximum(x, 0.0)
    >>> @relu.vjp
    ... def _(x, out, g):
    ...     return (jnp.where(x > 0, g, 0.0),)
    """

    def declare(fn: Callable) -> Rule:
        _check_options(options, "vjpcheck.rule")
        if isinstance(signature, BrokenSpec):
            signature.raise_error()
        if isinstance(fn, Rule):
            raise InvalidSpec(f"{fn.name!r} is already a vjpcheck rule; decorate it once.")
        rule_class = _rule_class(signature)
        if isinstance(fn, jax.custom_vjp):
            if rule_class is Rule:  # a TreeRule rejects static arguments itself
                _check_nondiff(fn, options)
            return rule_class(fn, signature, kind="custom_vjp", **options)
        if isinstance(fn, jax.custom_jvp):
            return rule_class(fn, signature, kind="autodiff", **options)
        if not callable(fn):
            raise InvalidSpec(f"@vjpcheck.rule decorates a function, not {fn!r}.")
        return rule_class(fn, signature, kind="vjp", **options)

    def decorate(fn: Callable) -> Rule:
        name = options.get("name") or getattr(fn, "__name__", None) or repr(fn)
        return deferred(lambda: declare(fn), name, _definition_site(fn), options.get("registry"))

    if callable(signature) and not isinstance(signature, str):
        raise InvalidSpec(
            f"@vjpcheck.rule needs a signature: write @vjpcheck.rule('(n)->(n)') above "
            f"{getattr(signature, '__name__', 'the function')}, with one parenthesised group "
            "of core dimensions per input."
        )
    if not is_collecting():
        _check_options(options, "vjpcheck.rule")  # at once, without waiting for the function
    return decorate


def register(fn: Callable, signature: str | TreeSignature, **options: Any) -> Rule:
    """Register an existing differentiable function so that `check` can test its rule.

    ``fn`` may be a `jax.custom_vjp` or `jax.custom_jvp` function (the reference
    defaults to its undecorated ``fun``) or any function JAX can differentiate, such
    as ``jax.nn.softmax``, in which case ``reference=`` is required. For a function
    whose arguments are pytrees, ``signature`` is a `tree_signature`. Options are
    those of `rule`.

    >>> import jax, jax.numpy as jnp
    >>> softmax = register(
    ...     jax.nn.softmax, "(n)->(n)", name="jax.nn.softmax", registry=Registry(),
    ...     reference=lambda x: jnp.exp(x) / jnp.sum(jnp.exp(x)))
    """
    options.setdefault("location", _caller_site())

    def declare() -> Rule:
        _check_options(options, "vjpcheck.register")
        if isinstance(signature, BrokenSpec):
            signature.raise_error()
        if isinstance(fn, Rule):
            raise InvalidSpec(f"{fn.name!r} is already a vjpcheck rule; register it once.")
        if not callable(fn):
            raise InvalidSpec(f"vjpcheck.register() takes a function, not {fn!r}.")
        kind = "custom_vjp" if isinstance(fn, jax.custom_vjp) else "autodiff"
        rule_class = _rule_class(signature)
        if rule_class is Rule:  # a TreeRule rejects static arguments itself
            _check_nondiff(fn, options)
        return rule_class(fn, signature, kind=kind, **options)

    name = options.get("name") or getattr(fn, "__name__", None) or repr(fn)
    return deferred(declare, name, options["location"], options.get("registry"))


# ----------------------------------------------------------------------------------
# Helpers


_OPTIONS = (
    "name", "specs", "reference", "kinks", "data", "output", "dtypes", "rtol", "atol", "registry",
    "second_order", "subgradients",
)


def parameter_names(fn: Callable, count: int, declared: str, fix: str) -> tuple[str, ...]:
    """Return the names of ``fn``'s first ``count`` positional parameters.

    Names that ``fn`` does not reveal (a builtin, or positions taken by ``*args``) are
    ``arg0``, ``arg1`` and so on. Raises InvalidSpec, as "{declared}, but the function
    takes (...). {fix}", when ``fn`` cannot take ``count`` positional arguments.
    """
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return tuple(f"arg{i}" for i in range(count))
    positional = [
        p for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    required = [p for p in positional if p.default is p.empty]
    if len(required) > count or (len(positional) < count and not takes_varargs):
        names = ", ".join(p.name for p in positional) or "no positional parameters"
        raise InvalidSpec(f"{declared}, but the function takes ({names}). {fix}")
    names = [p.name for p in positional[:count]]
    names += [f"arg{i}" for i in range(len(names), count)]
    return tuple(names)


def _check_options(options: Mapping[str, Any], where: str) -> None:
    for key in options:
        if key in _OPTIONS or key == "location":
            continue
        close = difflib.get_close_matches(key, _OPTIONS, n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidSpec(
            f"{where}() got an unknown option {key!r}.{suggestion} The options are "
            f"{', '.join(_OPTIONS)}."
        )


def _rule_class(signature: Any) -> type[Rule]:
    if isinstance(signature, TreeSignature):
        # Imported here because TreeRule subclasses Rule, so its module imports this one.
        from vjpcheck._tree_rules import TreeRule

        return TreeRule
    return Rule


def _check_nondiff(fn: Any, options: Mapping[str, Any]) -> None:
    """Require a static spec for each of a custom rule's nondiff_argnums, and no other."""
    nondiff = tuple(sorted(getattr(fn, "nondiff_argnums", ()) or ()))
    try:
        params = list(inspect.signature(getattr(fn, "fun", fn)).parameters)
    except (TypeError, ValueError):
        return
    statics = sorted(
        params.index(name) for name, spec in (options.get("specs") or {}).items()
        if isinstance(spec, Static) and name in params
    )
    if tuple(statics) == nondiff:
        return
    name = options.get("name") or getattr(fn, "__name__", repr(fn))
    if not nondiff:
        raise InvalidSpec(
            f"{name!r} has static specs for {[params[i] for i in statics]} but no "
            "nondiff_argnums; declare them as nondiff_argnums in jax.custom_vjp."
        )
    names = [params[i] if i < len(params) else f"argument {i}" for i in nondiff]
    raise InvalidSpec(
        f"{name!r} has nondiff_argnums={nondiff}, so vjpcheck needs a "
        f"vjpcheck.static(strategy) spec for exactly those arguments ({names}), "
        f"as in specs={{{names[0]!r}: vjpcheck.static(st.just(...))}}."
    )


def _interleave(arrays: Sequence[Any], statics: Mapping[int, Any]) -> tuple[Any, ...]:
    """Return the arguments in order, with ``statics`` at their positions."""
    result, remaining = [], iter(arrays)
    for position in range(len(arrays) + len(statics)):
        result.append(statics[position] if position in statics else next(remaining))
    return tuple(result)


def _normalise_dtypes(dtypes: Sequence[Any] | None, name: str) -> tuple[np.dtype, ...]:
    if dtypes is None:
        return DEFAULT_DTYPES
    if isinstance(dtypes, (str, type, np.dtype)):
        dtypes = (dtypes,)
    result = []
    for value in dtypes:
        try:
            dtype = np.dtype(jnp.dtype(value))
        except TypeError:
            dtype = None
        if dtype not in SUPPORTED_DTYPES:
            supported = ", ".join(str(d) for d in SUPPORTED_DTYPES)
            raise InvalidSpec(f"rule {name!r}: dtype {value!r} is not supported; use {supported}.")
        result.append(dtype)
    if not result:
        raise InvalidSpec(f"rule {name!r}: dtypes is empty; name at least one dtype.")
    return tuple(dict.fromkeys(result))


def _check_tolerance(label: str, value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidSpec(f"rule {name!r}: {label}={value!r} must be a finite number >= 0.")
    return float(value)


def _definition_site(fn: Callable) -> str:
    try:
        target = inspect.unwrap(getattr(fn, "fun", fn))
    except ValueError:
        target = fn
    try:
        path = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
    return f"{short_path(path)}:{line}"


def _caller_site() -> str:
    frame = inspect.currentframe()
    # Two frames up: the caller of register(), not register() itself.
    caller = frame.f_back.f_back if frame and frame.f_back else None
    if caller is None:
        return "<unknown>"
    return f"{short_path(caller.f_code.co_filename)}:{caller.f_lineno}"
