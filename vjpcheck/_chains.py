"""Chains of rules: the output of each link feeds the data input of the next.

A chain is itself a `Rule`. Its inputs are the first link's data input followed by the
other inputs (the parameters) of every link, its backward pass runs each link's
hand-written VJP in reverse order, and its reference composes the links' references.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from vjpcheck._errors import InvalidSpec, RuleMismatch
from vjpcheck._rules import _DEFAULT, Registry, Rule
from vjpcheck._specs import Signature, format_core_shape


class _DimClasses:
    """Union-find over (link, dimension) pairs, to bind a data input to a previous output."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}
        self.fixed: dict[Any, int] = {}

    def find(self, node: Any) -> Any:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def add(self, node: Any, size: int | None) -> None:
        root = self.find(node)
        if size is not None:
            self.bind_size(root, size)

    def bind_size(self, root: Any, size: int) -> None:
        if self.fixed.setdefault(root, size) != size:
            raise InvalidSpec(f"fixed sizes {self.fixed[root]} and {size} cannot be joined")

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        if rb in self.fixed:
            self.bind_size(ra, self.fixed.pop(rb))


def _link_nodes(k: int, core: Sequence[Any], position: str) -> list[Any]:
    # Fixed sizes get a node of their own, so that joining two of them can be checked.
    return [(k, d) if isinstance(d, str) else (k, f"#{position}{j}", d) for j, d in enumerate(core)]


def _combine_signatures(links: Sequence[Rule]) -> tuple[Signature, dict[tuple[int, str], str]]:
    classes = _DimClasses()
    for k, link in enumerate(links):
        for i, core in enumerate(link.signature.inputs):
            for node in _link_nodes(k, core, f"in{i}."):
                classes.add(node, node[2] if len(node) == 3 else None)
        for node in _link_nodes(k, link.signature.output, "out."):
            classes.add(node, node[2] if len(node) == 3 else None)
    for k in range(1, len(links)):
        previous = _link_nodes(k - 1, links[k - 1].signature.output, "out.")
        data = _link_nodes(k, links[k].signature.inputs[links[k].data_index], f"in{links[k].data_index}.")
        if len(previous) != len(data):
            raise InvalidSpec(
                f"{links[k - 1].name!r} returns core shape "
                f"{format_core_shape(links[k - 1].signature.output)} but {links[k].name!r} "
                f"takes {format_core_shape(links[k].signature.inputs[links[k].data_index])} "
                f"as its data input {links[k].arg_names[links[k].data_index]!r}."
            )
        for a, b in zip(previous, data):
            classes.union(a, b)

    names: dict[Any, str] = {}
    taken: set[str] = set()

    def name_of(node: Any) -> str | int:
        root = classes.find(node)
        if root in classes.fixed:
            return classes.fixed[root]
        if root not in names:
            base = root[1]
            candidate, n = base, 1
            while candidate in taken:
                n += 1
                candidate = f"{base}{n}"
            taken.add(candidate)
            names[root] = candidate
        return names[root]

    def core_of(k: int, core: Sequence[Any], position: str) -> tuple:
        return tuple(name_of(node) for node in _link_nodes(k, core, position))

    first = links[0]
    inputs = [core_of(0, first.signature.inputs[first.data_index], f"in{first.data_index}.")]
    for k, link in enumerate(links):
        for i, core in enumerate(link.signature.inputs):
            if i != link.data_index:
                inputs.append(core_of(k, core, f"in{i}."))
    output = core_of(len(links) - 1, links[-1].signature.output, "out.")
    text = ",".join(format_core_shape(c) for c in inputs) + "->" + format_core_shape(output)
    renames = {
        (k, d): name_of((k, d))
        for k, link in enumerate(links)
        for d in link.signature.dim_names
    }
    return Signature(text=text, inputs=tuple(inputs), output=output), renames


class Chain(Rule):
    """A composition of rules, checked as one rule whose VJP is back-propagation."""

    def __init__(
        self,
        links: Sequence[Rule],
        *,
        name: str | None = None,
        registry: Registry | None = None,
        location: str | None = None,
    ) -> None:
        links = tuple(links)
        _check_links(links)
        self.links = links
        signature, renames = _combine_signatures(links)

        arg_names, specs, kinks = [], {}, {}
        first = links[0]
        # For each chain input, the link and the argument of that link that it feeds.
        self.sources: list[tuple[int, int]] = [(0, first.data_index)]
        data_name = first.arg_names[first.data_index]
        arg_names.append(data_name)
        specs[data_name] = first.specs[first.data_index]
        if first.data_index in first.kinks:
            kinks[data_name] = first.kinks[first.data_index]
        for k, link in enumerate(links):
            mapping = {d: renames[(k, d)] for d in link.signature.dim_names}
            for i, arg in enumerate(link.arg_names):
                if i == link.data_index:
                    continue
                chain_name = f"{link.name}[{k}].{arg}"
                arg_names.append(chain_name)
                self.sources.append((k, i))
                specs[chain_name] = link.specs[i].rename(mapping)
                if i in link.kinks:
                    kinks[chain_name] = link.kinks[i]

        # Check the dtypes that every link is checked in by default, if there are any.
        dtypes = [d for d in links[0].dtypes if all(d in link.dtypes for link in links)] or list(links[0].dtypes)
        has_reference = all(link.reference is not None for link in links)

        super().__init__(
            self._compose_function,
            signature,
            kind="chain",
            name=name or " -> ".join(link.name for link in links),
            specs=specs,
            reference=self._compose_reference if has_reference else None,
            kinks=kinks,
            data=data_name,
            output=links[-1].output_spec,
            dtypes=dtypes,
            registry=registry if registry is not None else Registry(),
            location=location or links[0].location,
            arg_names=arg_names,
            second_order=all(link.second_order for link in links),
        )
        self.function = self._compose_function

    def link_arguments(self, primals: Sequence[Any]) -> list[list[Any]]:
        """Return each link's arguments, with None at the data input that the previous link fills."""
        params = iter(primals[1:])
        arguments = []
        for link in self.links:
            args = [None if i == link.data_index else next(params) for i in range(len(link.arg_names))]
            arguments.append(args)
        return arguments

    def _run(self, primals: Sequence[Any], pick) -> tuple[Any, list[Any]]:
        """Run the links forward with ``pick(link)`` as each link's function."""
        value = primals[0]
        seen = []
        for link, args in zip(self.links, self.link_arguments(primals)):
            args[link.data_index] = value
            seen.append(list(args))
            value = pick(link)(*args)
        return value, seen

    def _compose_function(self, *primals: Any) -> Any:
        return self._run(primals, lambda link: link.function)[0]

    def _compose_reference(self, *primals: Any) -> Any:
        return self._run(primals, _reference_of)[0]

    def raw_vjp(self, *primals: Any):
        value = primals[0]
        pullbacks = []
        for link, args in zip(self.links, self.link_arguments(primals)):
            args[link.data_index] = value
            value, pullback = link.raw_vjp(*args)
            pullbacks.append((link, args, pullback))

        def backward(g: Any) -> tuple[Any, ...]:
            per_link = []
            for link, args, pullback in reversed(pullbacks):
                cotangents = _link_cotangents(link, args, pullback(g))
                per_link.append((link, cotangents))
                g = cotangents[link.data_index]
            result = [g]
            for link, cotangents in reversed(per_link):
                result += [c for i, c in enumerate(cotangents) if i != link.data_index]
            return tuple(result)

        return value, backward


def _reference_of(link: Rule):
    return link.reference if link.reference is not None else link.function


def _link_cotangents(link: Rule, args: Sequence[Any], returned: Any) -> list[Any]:
    if not isinstance(returned, (tuple, list)) or len(returned) != len(args):
        raise RuleMismatch(
            f"rule {link.name!r} ({link.location}) returned {type(returned).__name__} from "
            f"its backward rule inside a chain; it must return a tuple of {len(args)} "
            "cotangents, one per input. Its own 'structure' property shows the details."
        )
    result = []
    for spec, arg, cotangent in zip(link.specs, args, returned):
        if cotangent is None and spec.kind == "float":
            cotangent = jnp.zeros_like(arg)
        result.append(cotangent)
    return result


def _check_links(links: Sequence[Rule]) -> None:
    if len(links) < 2:
        raise InvalidSpec(f"a chain needs at least two rules, got {len(links)}.")
    for link in links:
        if not isinstance(link, Rule):
            raise InvalidSpec(f"chain links must be vjpcheck rules; {link!r} is not one.")
        if isinstance(link, Chain):
            raise InvalidSpec(
                f"{link.name!r} is a chain; pass its links instead, as in "
                "chain(*first.links, next_rule)."
            )
        if link.static_specs and not link.bound_statics:
            raise InvalidSpec(
                f"{link.name!r} has static arguments {link.static_names}; chain it with "
                f"values bound, as in {link.name}.bind({link.static_names[0]}=...)."
            )
        if link.missing:
            raise InvalidSpec(link.missing)
    for a, b in zip(links, links[1:]):
        reason = feed_problem(a, b)
        if reason:
            raise InvalidSpec(f"cannot chain {a.name!r} into {b.name!r}: {reason}")


def feed_problem(a: Rule, b: Rule) -> str | None:
    """Why ``a``'s output cannot feed ``b``'s data input, or None when it can."""
    data_core = b.signature.inputs[b.data_index]
    data_name = b.arg_names[b.data_index]
    if len(a.signature.output) != len(data_core):
        return (
            f"{a.name!r} returns core shape {format_core_shape(a.signature.output)} and "
            f"{b.name!r} takes {format_core_shape(data_core)} as {data_name!r}; the ranks differ."
        )
    for x, y in zip(a.signature.output, data_core):
        if isinstance(x, int) and isinstance(y, int) and x != y:
            return f"fixed sizes {x} and {y} differ."
    if not b.specs[b.data_index].accepts(a.output_spec):
        return (
            f"{b.name!r} needs {b.specs[b.data_index]!r} for {data_name!r}, but "
            f"{a.name!r} declares output={a.output_spec!r}."
        )
    return None


def chain(*rules: Rule, name: str | None = None, registry: Registry | None = None) -> Chain:
    """Compose rules into a chain that is checked, and registered, as one rule.

    >>> # two_layer = chain(linear, relu, linear, softmax, cross_entropy,
    >>> #                   name="two_layer_classifier")
    """
    from vjpcheck._rules import _caller_site, default_registry, deferred

    location = _caller_site()
    registry = registry if registry is not None else default_registry
    label = name or " -> ".join(getattr(r, "name", repr(r)) for r in rules)
    return deferred(lambda: Chain(rules, name=name, registry=registry, location=location), label, location, registry)


# ----------------------------------------------------------------------------------
# Random chains for the composition property


def chain_partners(rule: Rule, pool: Sequence[Rule]) -> tuple[list[Rule], list[Rule]]:
    """Return the rules that may come before and after ``rule`` (or a chain's ends).

    A rule's dtypes are those it is checked in by default, not a limit, so partners
    are not filtered by dtype.
    """
    first, last = (rule.links[0], rule.links[-1]) if isinstance(rule, Chain) else (rule, rule)
    usable = [r for r in pool if not isinstance(r, Chain) and not r.missing]
    before = [r for r in usable if feed_problem(r, first) is None]
    after = [r for r in usable if feed_problem(last, r) is None]
    return before, after


def describe_chain_search(rule: Rule, pool: Sequence[Rule]) -> str:
    signatures = ", ".join(f"{r.name} {r.signature.text}" for r in pool) or "none"
    return (
        f"no registered rule chains with {rule.name!r} {rule.signature.text}: none returns "
        f"what its data input {rule.arg_names[rule.data_index]!r} takes, and none takes its "
        f"output as a data input. Rules tried: {signatures}."
    )


@functools.lru_cache(maxsize=512)
def cached_chain(links: tuple[Rule, ...]) -> Chain:
    return Chain(links)


def draw_chain(
    data: DataObject, rule: Rule, pool: Sequence[Rule], max_links: int, bind: Callable[[Rule], Rule] = lambda r: r
) -> Chain:
    """Draw a chain that contains ``rule`` (or all the links of a chain) and 1 to
    ``max_links - 1`` more rules, some before it and some after it."""
    links = list(rule.links) if isinstance(rule, Chain) else [rule]
    extra = data.draw(st.integers(1, max(1, max_links - 1)), label="rules added to the chain")
    before = data.draw(st.integers(0, extra), label="rules added before it")

    def extend(front: bool) -> bool:
        end = links[0] if front else links[-1]
        candidates = chain_partners(end, pool)[0 if front else 1]
        if not candidates:
            return False
        choice = data.draw(st.sampled_from(candidates), label="rule before" if front else "rule after")
        links.insert(0, choice) if front else links.append(choice)
        return True

    added = 0
    while added < before and extend(front=True):
        added += 1
    while added < extra and extend(front=False):
        added += 1
    while added < extra and extend(front=True):
        added += 1
    if added == 0:
        raise InvalidSpec(describe_chain_search(rule, pool))
    # Links with static arguments are drawn with values of their own.
    return cached_chain(tuple(bind(link) for link in links))
