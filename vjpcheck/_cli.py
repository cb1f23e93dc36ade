"""The ``vjpcheck`` command: import targets, check their rules, print a table."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vjpcheck._check import ERROR, FAILED, NOT_APPLICABLE, PASSED, PropertyResult, RunOptions, check_report
from vjpcheck._errors import InvalidSpec
from vjpcheck._properties import PROPERTIES
from vjpcheck._rules import BrokenRule, Rule, collecting, default_registry
from vjpcheck._strategies import ShapeOptions

# Exit codes, in order of precedence when several apply: 1 when a property failed; 3
# when a rule, a declaration or the import of a target raised an error; 2 when the
# command line was invalid (an option, a target that does not exist, no rules found);
# 0 when every property passed or does not apply.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3

_STYLES = {PASSED: "green", FAILED: "bold red", ERROR: "bold magenta", NOT_APPLICABLE: "dim"}
_LABELS = {PASSED: "PASS", FAILED: "FAIL", ERROR: "ERROR", NOT_APPLICABLE: "n/a"}


@dataclasses.dataclass
class Problem:
    """A target or declaration that could not be checked, shown as an ERROR row."""

    name: str
    stage: str
    message: str


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return _check_command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjpcheck",
        description="Property-based tests for hand-written VJP rules in JAX.",
    )
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser(
        "check",
        help="check every rule that the targets register",
        description=(
            "Import each target (a .py file, a folder or a dotted module name), check "
            "every rule it registers with every property, and exit with 1 if any fails."
        ),
    )
    check.add_argument("targets", nargs="+", metavar="TARGET", help="a .py file, a folder or a dotted module")
    check.add_argument(
        "--max-examples", type=int, default=None, metavar="N",
        help="Hypothesis examples per rule, property and dtype (default: the Hypothesis profile's, 100)",
    )
    check.add_argument(
        "--property", action="append", dest="properties", choices=list(PROPERTIES),
        help="check only this property; repeat for several",
    )
    check.add_argument(
        "--dtype", action="append", dest="dtypes", choices=["float32", "float64"],
        help="check only this dtype; repeat for several (default: each rule's dtypes)",
    )
    check.add_argument("--max-side", type=int, default=4, metavar="N", help="largest drawn core dimension size (default: 4)")
    check.add_argument("--seed", type=int, default=None, help="seed for Hypothesis's random draws")
    check.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS",
        help="stop an example that runs longer than this and report an error; 0 turns the limit off (default: 60)",
    )
    return parser


def _check_command(args: argparse.Namespace) -> int:
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    rules, problems = collect_rules(args.targets)
    if not rules and not problems:
        console.print(
            f"No rules are registered by {', '.join(args.targets)}; declare some with "
            "@vjpcheck.rule or vjpcheck.register."
        )
        return EXIT_USAGE

    try:
        options = RunOptions(
            max_examples=args.max_examples,
            shapes=ShapeOptions(max_side=args.max_side),
            seed=args.seed,
            timeout=args.timeout or None,
        )
    except InvalidSpec as error:
        console.print(f"[bold magenta]ERROR[/] {error}")
        return EXIT_USAGE

    start = time.perf_counter()
    results: list[PropertyResult] = []
    with console.status("Checking rules...") if console.is_terminal else _nothing():
        for rule in rules:
            try:
                report = check_report(rule, properties=args.properties, dtypes=args.dtypes, pool=rules, options=options)
            except InvalidSpec as error:
                results.append(PropertyResult(rule, "-", ERROR, message=str(error)))
                continue
            results.extend(report.results)
    elapsed = time.perf_counter() - start

    console.print(_table(problems, results))
    _print_details(console, problems, results)
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in _LABELS}
    errors = counts[ERROR] + sum(p.stage != "target" for p in problems)
    summary = (
        f"{counts[PASSED]} passed, {counts[FAILED]} failed, {errors} errors, "
        f"{counts[NOT_APPLICABLE]} not applicable, {len(rules)} rules in {elapsed:.1f} s"
    )
    console.print(summary)
    if counts[FAILED]:
        return EXIT_FAILED
    if errors:
        return EXIT_ERROR
    if problems:
        return EXIT_USAGE
    return EXIT_OK


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _table(problems: Sequence[Problem], results: Sequence[PropertyResult]) -> Table:
    table = Table(title="vjpcheck")
    table.add_column("Rule")
    table.add_column("Property")
    table.add_column("Result")
    table.add_column("Dtypes")
    table.add_column("Examples", justify="right")
    table.add_column("Discarded", justify="right")
    table.add_column("Max error / tol", justify="right")
    table.add_column("Time", justify="right")
    for problem in problems:
        table.add_row(escape(problem.name), problem.stage, f"[{_STYLES[ERROR]}]ERROR[/]", "", "", "", "", "")
    for r in results:
        style = _STYLES[r.outcome]
        table.add_row(
            escape(r.rule.name),
            r.property,
            f"[{style}]{_LABELS[r.outcome]}[/]",
            ",".join(d.name.replace("float", "f") for d in r.dtypes),
            str(r.examples) if r.outcome != NOT_APPLICABLE else "",
            str(sum(r.discarded.values())) if r.discarded else "",
            f"{r.worst_ratio:.3g}" if r.outcome == PASSED else "",
            f"{r.seconds:.1f} s" if r.outcome != NOT_APPLICABLE else "",
        )
    return table


def _print_details(console: Console, problems: Sequence[Problem], results: Sequence[PropertyResult]) -> None:
    discards = [r for r in results if r.discarded]
    if discards:
        console.print("\nDiscarded examples (drawn, then rejected before any comparison):")
        for r in discards:
            reasons = ", ".join(f"{count} {reason}" for reason, count in r.discarded.most_common())
            console.print(f"  {r.rule.name} [{r.property}]: {reasons}", markup=False, soft_wrap=True)
    skipped = [r for r in results if r.outcome == NOT_APPLICABLE]
    if skipped:
        console.print("\nNot applicable:")
        for r in skipped:
            console.print(f"  {r.rule.name} [{r.property}]: {r.message}", markup=False, soft_wrap=True)
    for problem in problems:
        console.rule(escape(f"ERROR: {problem.name} [{problem.stage}]"), style=_STYLES[ERROR])
        console.print(problem.message, markup=False, soft_wrap=True)
    for r in results:
        if r.outcome in (FAILED, ERROR):
            console.rule(escape(f"{_LABELS[r.outcome]}: {r.rule.name} [{r.property}]"), style=_STYLES[r.outcome])
            console.print(r.message, markup=False, soft_wrap=True)
    if problems or any(r.outcome in (FAILED, ERROR) for r in results):
        console.rule()


# ----------------------------------------------------------------------------------
# Targets


def collect_rules(targets: Sequence[str]) -> tuple[list[Rule], list[Problem]]:
    """Import the targets; return the rules they registered, and what could not load.

    A declaration that raises InvalidSpec does not stop its module from loading: it
    becomes a problem of its own, and the module's other rules are still checked.
    """
    before = list(default_registry)
    modules: list[ModuleType] = []
    problems: list[Problem] = []
    with collecting():
        for target in targets:
            try:
                modules.extend(import_target(target))
            except InvalidSpec as error:
                problems.append(Problem(target, "target", f"{target}: {error}"))
            except Exception:  # noqa: BLE001 - any import failure is reported, the others go on
                problems.append(Problem(target, "import", f"importing {target} failed:\n{traceback.format_exc()}"))
    found = [r for r in default_registry if not any(r is b for b in before)]
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, (Rule, BrokenRule)) and not any(value is r for r in found):
                found.append(value)
    for broken in (r for r in found if isinstance(r, BrokenRule)):
        problems.append(Problem(broken.name, "declaration", f"{broken.location}: {broken.error}"))
    return [r for r in found if isinstance(r, Rule)], problems


def import_target(target: str) -> list[ModuleType]:
    """Import a .py file, a folder of them, or a dotted module name, with its submodules."""
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.exists():
            raise InvalidSpec(f"no file or folder named {target!r}")
        return _import_path(path.resolve())
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as error:
        if error.name and target.startswith(error.name):
            raise InvalidSpec(
                f"{target!r} is neither a file, a folder nor an importable module "
                f"({error}); pass a path, or install the package that provides it."
            ) from None
        raise
    return [module, *_submodules(module)]


def _import_path(path: Path) -> list[ModuleType]:
    if path.is_dir():
        if (path / "__init__.py").exists():
            module = _import_by_name(path)
            return [module, *_submodules(module)]
        modules = []
        for child in sorted(path.glob("*.py")):
            modules.extend(_import_path(child))
        return modules
    return [_import_by_name(path)]


def _import_by_name(path: Path) -> ModuleType:
    """Import a file or package by its dotted name, with the folder above its top
    package on sys.path, the way pytest's default import mode does."""
    parts = [path.stem if path.suffix == ".py" else path.name]
    root = path.parent
    while (root / "__init__.py").exists():
        parts.insert(0, root.name)
        root = root.parent
    if parts[-1] == "__init__":
        parts.pop()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(".".join(parts))


def _submodules(module: ModuleType) -> list[ModuleType]:
    if not hasattr(module, "__path__"):
        return []
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(module.__path__, prefix=module.__name__ + ".")
    ]
