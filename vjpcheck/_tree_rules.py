"""Rules whose arguments are pytrees, checked as rules over the arguments' leaves.

A `TreeRule` is a `Rule` with one input per leaf, named by key path, so every property,
chain and report handles it as it handles any rule. Calling it takes the pytrees, and
its backward rule returns one cotangent pytree per argument, which it flattens to the
leaves after matching them against the structure of the arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from vjpcheck._errors import InvalidSpec, RuleMismatch
from vjpcheck._rules import _DEFAULT, Rule, _definition_site, parameter_names
from vjpcheck._specs import Static
from vjpcheck._trees import TreeSignature, match_cotangent, tuple_problems

_MISSING = object()


class TreeRule(Rule):
    """A rule whose arguments are pytrees, declared with a `tree_signature`.

    ``arg_names`` names the leaves, as ``params['W']``, and ``tree_names`` the
    arguments. Options (``specs``, ``kinks``, ``data``) name leaves, or a whole
    argument or subtree to apply to each leaf in it; a leaf's own entry wins.
    """

    def __init__(
        self,
        fn: Callable,
        signature: TreeSignature,
        *,
        kind: str,
        name: str | None = None,
        specs: Mapping[str, Any] | None = None,
        reference: Any = _DEFAULT,
        kinks: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
        data: str | None = None,
        location: str | None = None,
        **options: Any,
    ) -> None:
        self.tree_primal = fn
        self.tree_signature = signature
        self._tree_vjp: Callable | None = None
        self._tree_fwd: Callable | None = None
        self._tree_bwd: Callable | None = None
        rule_name = name or getattr(fn, "__name__", None) or type(fn).__name__
        _reject_static_arguments(rule_name, fn, specs or {})
        self.tree_names = parameter_names(
            fn,
            len(signature.inputs),
            f"rule {rule_name!r}: {signature!r} declares {len(signature.inputs)} input(s)",
            "Give tree_signature one positional input per argument of the function.",
        )
        leaf_names = signature.leaf_names(self.tree_names)
        # For each leaf, the position of the argument it belongs to.
        self.leaf_arguments = tuple(i for i, paths in enumerate(signature.paths) for _ in paths)
        self._nodes = _node_leaves(self.tree_names, signature)

        def op(*leaves: Any) -> Any:
            return fn(*signature.unflatten(leaves))

        # JAX names the custom_vjp built from op after it, as custom_vjp_call[name=...] in jaxprs.
        op.__name__ = op.__qualname__ = rule_name

        super().__init__(
            op,
            signature.flat,
            kind=kind,
            name=rule_name,
            specs=self._per_leaf(rule_name, "specs", specs or {}, leaf_names),
            reference=_flat_reference(reference, fn, signature),
            kinks=self._per_leaf(rule_name, "kinks", kinks, leaf_names) if isinstance(kinks, Mapping) else kinks,
            data=self._data_leaf(rule_name, data, leaf_names),
            location=location or _definition_site(fn),
            arg_names=leaf_names,
            **options,
        )
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    # -- declaration -------------------------------------------------------------

    def _per_leaf(self, rule_name: str, option: str, values: Mapping[str, Any], leaf_names: Sequence[str]) -> dict[str, Any]:
        """Map an option's keys, which name leaves, subtrees or arguments, to leaf names.

        Keys that name deeper nodes are applied later, so a leaf's own entry wins.
        """
        unknown = sorted(set(values) - set(self._nodes))
        if unknown:
            raise InvalidSpec(
                f"rule {rule_name!r}: {option} name {unknown}, which are neither leaves nor "
                f"arguments; the leaves are {list(leaf_names)} and the arguments are "
                f"{list(self.tree_names)}."
            )
        result: dict[str, Any] = {}
        for key in sorted(values, key=lambda k: self._nodes[k][0]):
            for leaf in self._nodes[key][1]:
                result[leaf_names[leaf]] = values[key]
        return result

    def _data_leaf(self, rule_name: str, data: str | None, leaf_names: Sequence[str]) -> str | None:
        if data is None:
            return None
        if data not in self._nodes:
            raise InvalidSpec(
                f"rule {rule_name!r}: data={data!r} is neither a leaf nor an argument; "
                f"the leaves are {list(leaf_names)} and the arguments are {list(self.tree_names)}."
            )
        leaves = self._nodes[data][1]
        if len(leaves) != 1:
            raise InvalidSpec(
                f"rule {rule_name!r}: data={data!r} names {len(leaves)} leaves; name the one "
                "leaf that receives the previous rule's output in a chain, one of "
                f"{[leaf_names[i] for i in leaves]}."
            )
        return leaf_names[leaves[0]]

    def input_label(self, i: int) -> str:
        """Name leaf ``i`` and the position of its argument, as ``"params['W']" (input 0)``."""
        return f"{self.arg_names[i]!r} (input {self.leaf_arguments[i]})"

    # -- the backward rule -------------------------------------------------------

    def vjp(self, fn: Callable) -> Callable:
        """Decorator: set the rule ``fn(*primals, out, g) -> one cotangent pytree per argument``."""
        signature = self.tree_signature

        def flat_vjp(*args: Any) -> tuple[Any, ...]:
            trees = signature.unflatten(args[:-2])
            return self.flatten_cotangents(fn(*trees, args[-2], args[-1]), trees)

        super().vjp(flat_vjp)
        self._tree_vjp = fn
        self.note_arity(fn, "vjp", [*self.tree_names, "out", "g"])
        return fn

    def fwd(self, fn: Callable) -> Callable:
        """Decorator: set the forward pass ``fn(*primals) -> (out, residuals)``."""
        signature = self.tree_signature

        def flat_fwd(*leaves: Any) -> Any:
            return fn(*signature.unflatten(leaves))

        super().fwd(flat_fwd)
        self._tree_fwd = fn
        self.note_arity(fn, "fwd", list(self.tree_names))
        return fn

    def bwd(self, fn: Callable) -> Callable:
        """Decorator: set the backward pass ``fn(residuals, g) -> one cotangent pytree per argument``."""

        def flat_bwd(residuals: Any, g: Any) -> tuple[Any, ...]:
            return self.flatten_cotangents(fn(residuals, g))

        super().bwd(flat_bwd)
        self._tree_bwd = fn
        self.note_arity(fn, "bwd", ["residuals", "g"])
        return fn

    def defvjp(self, fwd: Callable, bwd: Callable, **options: Any) -> None:
        """Call ``defvjp`` on the wrapped `jax.custom_vjp`, for ``@rule`` stacked on one."""
        if self.kind != "custom_vjp":
            super().defvjp(fwd, bwd, **options)
        self.tree_primal.defvjp(fwd, bwd, **options)

    @property
    def missing(self) -> str | None:
        if self._arity_problem:
            return self._arity_problem
        if self.kind == "custom_vjp":
            if self.tree_primal.fwd is None:
                return f"rule {self.name!r} wraps a jax.custom_vjp that has no rule yet; call {self.name}.defvjp(fwd, bwd)."
            return None
        return super().missing

    def backward_functions(self) -> list[Callable | None]:
        primal = self.tree_primal
        return super().backward_functions() + [
            self._tree_vjp, self._tree_fwd, self._tree_bwd,
            getattr(primal, "fwd", None), getattr(primal, "bwd", None),
        ]

    def raw_tree_vjp(self, *leaves: Any) -> tuple[Any, Callable[[Any], Any]]:
        """Run the forward pass on the leaves; return the output and the hand-written
        backward function, which returns one cotangent pytree per argument, unvalidated."""
        if self.missing:
            raise InvalidSpec(self.missing)
        trees = self.tree_signature.unflatten(leaves)
        if self._tree_vjp is not None:
            out = self.primal(*leaves)
            return out, lambda g: self._tree_vjp(*trees, out, g)
        if self._tree_fwd is not None:
            out, residuals = self._fwd(*leaves)
            return out, lambda g: self._tree_bwd(residuals, g)
        primal = self.tree_primal
        if isinstance(primal, jax.custom_vjp) and not primal.symbolic_zeros:
            out, residuals = primal.fwd(*trees)
            return out, lambda g: primal.bwd(residuals, g)
        out, pullback = jax.vjp(self.primal, *leaves)
        return out, lambda g: self.tree_signature.unflatten(pullback(g))

    def raw_vjp(self, *leaves: Any) -> tuple[Any, Callable[[Any], Any]]:
        """Run the forward pass; return the output and a backward function that returns
        one cotangent per leaf.

        The backward function raises RuleMismatch when the rule's cotangents do not have
        the structure of the arguments.
        """
        out, backward = self.raw_tree_vjp(*leaves)
        trees = self.tree_signature.unflatten(leaves)
        return out, lambda g: self.flatten_cotangents(backward(g), trees)

    def flatten_cotangents(self, returned: Any, trees: Sequence[Any] | None = None) -> tuple[Any, ...]:
        """Return the leaves of the cotangent pytrees, None where the rule returned None.

        ``trees`` are the arguments, when known. Raises RuleMismatch, naming key paths,
        when ``returned`` is not one cotangent pytree per argument of its structure.
        """
        problems = tuple_problems(returned, self.tree_names)
        leaves: list[Any] = []
        if not problems:
            templates = trees if trees is not None else self.tree_signature.placeholders()
            for i, (name, template, cotangent) in enumerate(zip(self.tree_names, templates, returned)):
                found, more = match_cotangent(template, cotangent, name, i)
                leaves += found
                problems += more
        if problems:
            raise RuleMismatch(
                f"rule {self.name!r} ({self.location}): the backward rule's cotangents do not "
                "match the arguments:\n" + "\n".join(problems)
            )
        return tuple(leaves)

    # -- calling -----------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.missing:
            raise InvalidSpec(self.missing)
        arguments = self._arguments(args, kwargs)
        return self.function(*self.tree_signature.flatten(arguments, self.tree_names, self.name))

    def _arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        """Place positional and keyword arguments in the order of ``tree_names``."""
        names = self.tree_names
        if len(args) > len(names):
            raise TypeError(
                f"{self.name}() takes {len(names)} arguments ({', '.join(names)}) but "
                f"{len(args)} were given."
            )
        values = list(args) + [_MISSING] * (len(names) - len(args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}.")
            position = names.index(key)
            if values[position] is not _MISSING:
                raise TypeError(f"{self.name}() got multiple values for argument {key!r}.")
            values[position] = value
        absent = [name for name, value in zip(names, values) if value is _MISSING]
        if absent:
            raise TypeError(f"{self.name}() is missing arguments {absent}.")
        return values

    def __repr__(self) -> str:
        return f"<vjpcheck rule {self.name} {self.tree_signature!r} at {self.location}>"


def _node_leaves(arg_names: Sequence[str], signature: TreeSignature) -> dict[str, tuple[int, list[int]]]:
    """Map the name of every argument, subtree and leaf to its depth and its leaves' flat indices."""
    nodes: dict[str, tuple[int, list[int]]] = {}
    flat = 0
    for name, paths in zip(arg_names, signature.paths):
        for path in paths:
            for depth in range(len(path) + 1):
                node = name + jax.tree_util.keystr(tuple(path[:depth]))
                nodes.setdefault(node, (depth, []))[1].append(flat)
            flat += 1
    return nodes


def _flat_reference(reference: Any, fn: Callable, signature: TreeSignature) -> Any:
    """Return the reference as a function of the leaves; pass anything else through."""
    if reference is _DEFAULT and isinstance(fn, (jax.custom_vjp, jax.custom_jvp)):
        reference = fn.fun
    if reference is None or reference is _DEFAULT or not callable(reference):
        # Rule resolves the default, and rejects a reference that is not callable.
        return reference

    def flat_reference(*leaves: Any) -> Any:
        return reference(*signature.unflatten(leaves))

    return flat_reference


def _reject_static_arguments(rule_name: str, fn: Callable, specs: Mapping[str, Any]) -> None:
    """Raise before the parameter count is checked, because a static argument makes the
    function take one more parameter than the tree signature lists."""
    statics = sorted(key for key, value in specs.items() if isinstance(value, Static))
    nondiff = tuple(getattr(fn, "nondiff_argnums", ()) or ())
    if statics or nondiff:
        cause = f"specs give {statics} a vjpcheck.static(...) spec" if statics else f"it has nondiff_argnums={nondiff}"
        raise InvalidSpec(
            f"rule {rule_name!r}: {cause}, but rules declared with tree_signature take no "
            "static arguments. Fix the value inside the op instead, for example with "
            "functools.partial, and declare the rule on the result."
        )
