"""Pytree inputs: signatures whose arguments are pytrees of core shapes, and the match of
a backward rule's cotangents against the structure of those arguments.

Leaves are ordered and named the way `jax.tree_util` flattens them: a leaf's name is
its argument's name followed by ``jax.tree_util.keystr`` of its key path, such as
``params['W']``, ``state[0]`` or ``p.W``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax

from vjpcheck._errors import InvalidSpec
from vjpcheck._report import short_array
from vjpcheck._specs import _ARG, Signature, _deferrable

_CORE_SHAPE = re.compile(rf"^\s*{_ARG}\s*$")

KeyPath = tuple[Any, ...]


class _Placeholder:
    """A leaf of unknown shape, where only the structure of an argument is known."""

    def __repr__(self) -> str:
        return "an array"


_PLACEHOLDER = _Placeholder()


@dataclasses.dataclass(frozen=True, eq=False)
class TreeSignature:
    """Core shapes for arguments that are pytrees, and for an op that returns one array.

    ``flat`` is the gufunc signature of all the leaves, argument by argument, in the
    order in which `jax.tree_util` flattens each argument.
    """

    inputs: tuple[Any, ...]
    output: str
    treedefs: tuple[Any, ...]
    # Per argument, the key path of each leaf.
    paths: tuple[tuple[KeyPath, ...], ...]
    flat: Signature

    def leaf_names(self, arg_names: Sequence[str]) -> tuple[str, ...]:
        """Return every leaf's name: its argument's name followed by its key path."""
        return tuple(
            name + jax.tree_util.keystr(path)
            for name, paths in zip(arg_names, self.paths)
            for path in paths
        )

    def unflatten(self, leaves: Sequence[Any]) -> tuple[Any, ...]:
        """Build the arguments from the leaves of all of them, in flat order."""
        leaves = list(leaves)
        trees, start = [], 0
        for treedef in self.treedefs:
            trees.append(jax.tree_util.tree_unflatten(treedef, leaves[start:start + treedef.num_leaves]))
            start += treedef.num_leaves
        return tuple(trees)

    def placeholders(self) -> tuple[Any, ...]:
        """Return the arguments' structure, with a placeholder at each leaf."""
        return self.unflatten([_PLACEHOLDER] * sum(t.num_leaves for t in self.treedefs))

    def flatten(self, args: Sequence[Any], arg_names: Sequence[str], rule_name: str) -> list[Any]:
        """Return the leaves of ``args``, or raise TypeError naming an argument whose
        structure differs from the declared one."""
        leaves = []
        for name, arg, treedef in zip(arg_names, args, self.treedefs):
            arg_leaves, found = jax.tree_util.tree_flatten(arg)
            if found != treedef:
                raise TypeError(
                    f"{rule_name}(): argument {name!r} has the structure {found}, but the "
                    f"rule's tree_signature declares {treedef}. Pass a pytree of the "
                    "declared structure."
                )
            leaves += arg_leaves
        return leaves

    def __repr__(self) -> str:
        inputs = ", ".join(repr(i) for i in self.inputs)
        return f"tree_signature({inputs}, output={self.output!r})"


@_deferrable
def tree_signature(*inputs: Any, output: str | None = None) -> TreeSignature:
    """Declare the core shapes of a rule whose arguments are pytrees.

    Each positional input describes one argument: a core shape string such as
    ``"(h,d)"`` (``"()"`` for a scalar) for an array, or a pytree (a dict, tuple, list
    or registered node) whose leaves are such strings. ``output`` is the core shape of
    the one array the op returns. Pass the result to `rule` or `register` in place of
    a signature string.

    >>> signature = tree_signature({"W": "(h,d)", "b": "(h)"}, "(d)", output="(h)")
    """
    if output is None:
        raise InvalidSpec(
            "tree_signature() needs output=, the core shape of the one array the op "
            "returns, as in tree_signature({'W': '(h,d)', 'b': '(h)'}, '(d)', output='(h)')."
        )
    if not inputs:
        raise InvalidSpec(
            "tree_signature() got no inputs. Pass one core shape string, or one pytree "
            "of them, per argument of the op, as in "
            "tree_signature({'W': '(h,d)', 'b': '(h)'}, '(d)', output='(h)')."
        )
    _check_output(output)
    treedefs, paths, groups = [], [], []
    for index, tree in enumerate(inputs):
        pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)
        if not pairs:
            raise InvalidSpec(
                f"tree_signature(): input {index} is {tree!r}, a pytree with no leaves, so "
                "the argument has no arrays. Give it at least one leaf, a core shape "
                "string such as '(n)' or '()'; to declare a scalar, write the string '()', "
                "not an empty tuple."
            )
        for path, leaf in pairs:
            groups.append(_check_leaf(index, path, leaf))
        treedefs.append(treedef)
        paths.append(tuple(path for path, _ in pairs))
    flat_text = ",".join(groups) + "->" + output
    try:
        flat = Signature.parse(flat_text)
    except InvalidSpec as error:
        raise InvalidSpec(f"tree_signature(): the leaves' core shapes are invalid. {error}") from None
    return TreeSignature(tuple(inputs), output, tuple(treedefs), tuple(paths), flat)


def _check_output(output: Any) -> None:
    if isinstance(output, str):
        if not _CORE_SHAPE.match(output):
            raise InvalidSpec(
                f"tree_signature(output={output!r}): output is not a core shape. Write "
                "one parenthesised group of dimension names or sizes, such as '(h)', or "
                "'()' for a scalar."
            )
        return
    if jax.tree_util.tree_structure(output).node_data() is not None:
        raise InvalidSpec(
            f"tree_signature(output={output!r}): output is a pytree, but vjpcheck checks "
            "ops that return a single array. Return one array, for example by joining "
            "the results with jnp.concatenate or jnp.stack, or declare one rule per "
            "output, and give its core shape as a string such as '(h)'."
        )
    raise InvalidSpec(
        f"tree_signature(output={output!r}): output must be a core shape string such "
        "as '(h)', or '()' for a scalar."
    )


def _check_leaf(index: int, path: KeyPath, leaf: Any) -> str:
    where = f"input {index}" + (f" at {jax.tree_util.keystr(path)}" if path else "")
    if not isinstance(leaf, str):
        hint = (
            " Write a fixed size inside the string, as in '(3,4)', not as the tuple (3, 4)."
            if isinstance(leaf, int) else ""
        )
        raise InvalidSpec(
            f"tree_signature(): {where} is {leaf!r} of type {type(leaf).__name__}; each leaf "
            f"must be a core shape string such as '(h,d)', or '()' for a scalar.{hint}"
        )
    if "->" in leaf:
        raise InvalidSpec(
            f"tree_signature(): {where} is {leaf!r}, a whole signature. Give one core "
            "shape per input and the output as output=..., as in "
            "tree_signature('(h,d)', '(d)', output='(h)')."
        )
    if not _CORE_SHAPE.match(leaf):
        raise InvalidSpec(
            f"tree_signature(): {where} is {leaf!r}, which is not a core shape. Write one "
            "parenthesised group of comma-separated dimension names or sizes, such as "
            "'(h,d)', or '()' for a scalar."
        )
    return leaf


# ----------------------------------------------------------------------------------
# Matching cotangents to the structure of the arguments


LeafCheck = Callable[[str, int, Any, Any], "str | None"]


def tuple_problems(returned: Any, names: Sequence[str]) -> list[str]:
    """List what is wrong with the container of a backward rule's cotangents, which must
    be a tuple with one cotangent per argument."""
    n = len(names)
    listed = ", ".join(names)
    cotangents = "cotangent" if n == 1 else "cotangents"
    if isinstance(returned, list):
        return [f"the backward rule returned a list; return a tuple of {n} {cotangents} ({listed})."]
    if not isinstance(returned, tuple):
        returned_kind = short_array(returned) if hasattr(returned, "shape") else type(returned).__name__
        return [
            f"the backward rule returned a single {returned_kind}; return a tuple with one cotangent "
            f"per input ({listed}), such as (g,) for one input."
        ]
    if len(returned) != n:
        returned_word = "cotangent" if len(returned) == 1 else "cotangents"
        inputs = "input" if n == 1 else "inputs"
        return [f"the backward rule returned {len(returned)} {returned_word} for {n} {inputs} ({listed})."]
    return []


def match_cotangent(
    template: Any, returned: Any, name: str, index: int, check_leaf: LeafCheck | None = None
) -> tuple[list[Any], list[str]]:
    """Match the cotangent a rule returned for one argument against that argument.

    ``template`` is the argument itself, or its `TreeSignature.placeholders`. None in
    ``returned`` stands for a zero cotangent for a leaf or for a whole subtree, as in
    JAX. Returns the cotangent's leaves in flattening order (None for those zeros) and
    the problems found, each naming the key path. ``check_leaf(label, position,
    primal, cotangent)`` judges each leaf that is not None, where ``position`` counts
    the argument's leaves from 0.
    """
    leaves: list[Any] = []
    problems: list[str] = []
    _match(template, returned, name, index, check_leaf, leaves, problems)
    return leaves, problems


def _match(template, returned, name, index, check_leaf, leaves, problems) -> None:
    if returned is None:
        leaves.extend([None] * len(jax.tree_util.tree_leaves(template)))
        return
    label = f"cotangent for {name!r} (input {index})"
    expected, found = _node(template), _node(returned)
    if expected is None:
        if found is not None:
            problems.append(f"{label} is {describe(returned)}; expected {describe(template)}, a leaf of the input.")
        elif check_leaf is not None:
            problem = check_leaf(label, len(leaves), template, returned)
            if problem:
                problems.append(problem)
        leaves.append(returned)
        return
    count = len(jax.tree_util.tree_leaves(template))
    if found is None or found[0] is not expected[0]:
        problems.append(
            f"{label} is {describe(returned)}; expected {describe(template)}, the structure "
            "of the input. Return the same container types as the input."
        )
        leaves.extend([None] * count)
        return
    expected_keys = [key for key, _ in expected[2]]
    found_keys = [key for key, _ in found[2]]
    if expected_keys != found_keys:
        problems.append(_key_problem(label, name, template, expected_keys, found_keys))
        leaves.extend([None] * count)
        return
    if not _same_data(expected[1], found[1]):
        problems.append(
            f"{label} is {describe(returned)} with node data {found[1]!r}; expected "
            f"{expected[1]!r}, as the input has."
        )
        leaves.extend([None] * count)
        return
    for (key, child), (_, returned_child) in zip(expected[2], found[2]):
        child_name = name + jax.tree_util.keystr((key,))
        _match(child, returned_child, child_name, index, check_leaf, leaves, problems)


def _key_problem(label: str, name: str, template: Any, expected: list[Any], found: list[Any]) -> str:
    missing = [name + jax.tree_util.keystr((key,)) for key in expected if key not in found]
    extra = [name + jax.tree_util.keystr((key,)) for key in found if key not in expected]
    parts = []
    if missing:
        parts.append(f"lacks {', '.join(missing)}")
    if extra:
        parts.append(f"has {', '.join(extra)}, which the input does not have")
    if not parts:
        parts.append("has its entries in another order")
    return f"{label} {' and '.join(parts)}; expected {describe(template)}, the structure of the input."


def _node(tree: Any) -> tuple[type, Any, list[tuple[Any, Any]]] | None:
    """Return a pytree node's type, node data and (key, child) pairs; None for a leaf.

    None is a node without children, as in JAX.
    """
    one_level = lambda value: value is not tree
    treedef = jax.tree_util.tree_structure(tree, is_leaf=one_level)
    data = treedef.node_data()
    if data is None:
        return None
    pairs, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=one_level)
    children = [(path[0], child) for path, child in pairs]
    return data[0], data[1], children


def _same_data(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b


def describe(tree: Any) -> str:
    """Describe a pytree's top level, as in "a dict with keys ['W', 'b']" or "f32[2,3]"."""
    if tree is None:
        return "None"
    if isinstance(tree, _Placeholder):
        return "an array"
    node = _node(tree)
    if node is None:
        return short_array(tree) if hasattr(tree, "dtype") else f"a {type(tree).__name__}"
    kind, _, children = node
    if kind is dict:
        return f"a dict with keys {[key.key for key, _ in children]}"
    if kind in (tuple, list):
        return f"a {kind.__name__} of {len(children)}"
    fields = ", ".join(jax.tree_util.keystr((key,)) for key, _ in children)
    return f"a {kind.__name__}" + (f" with {fields}" if fields else "")
