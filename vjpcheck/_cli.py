"""The ``vjpcheck`` command: import targets, check their rules, print a table.

``vjpcheck check`` can also write the results as JSON (``--json``) and JUnit XML
(``--junit-xml``) for CI, and ``vjpcheck list`` shows the rules that targets register.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vjpcheck import __version__
from vjpcheck._check import ERROR, FAILED, INCONCLUSIVE, NOT_APPLICABLE, PASSED, PropertyResult, RunOptions, check_report
from vjpcheck._errors import InvalidSpec, collecting
from vjpcheck._jax_cache import JAX_CACHE_VARIABLE, cache_folder, enable_jax_cache
from vjpcheck._outputs import build_records, write_json, write_junit_xml
from vjpcheck._properties import PROPERTIES
from vjpcheck._rules import SUPPORTED_DTYPES, BrokenRule, Rule, default_registry
from vjpcheck._specs import take_unused_broken_specs
from vjpcheck._strategies import ShapeOptions

# Exit codes, in order of precedence when several apply:
# 1: a property failed.
# 3: a rule, a declaration or the import of a target raised an error, or a target
#    registered no rules while other targets registered rules or reported problems.
# 2: the command line was invalid: an invalid option, a target or --rule name that does
#    not exist, no rules in any target, or a --json or --junit-xml file that cannot be
#    written.
# 0: every property passed or does not apply.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3

_STYLES = {PASSED: "green", FAILED: "bold red", ERROR: "bold magenta", NOT_APPLICABLE: "dim", INCONCLUSIVE: "yellow"}
_LABELS = {PASSED: "PASS", FAILED: "FAIL", ERROR: "ERROR", NOT_APPLICABLE: "n/a", INCONCLUSIVE: "INCONCLUSIVE"}


@dataclasses.dataclass
class Problem:
    """A target or declaration that could not be checked, shown as an ERROR row."""

    name: str
    stage: str
    message: str
    # Whether the problem makes the exit code 2 rather than 3: a target that does not
    # exist.
    usage: bool = False
    # For a declaration that raised, where it is, as path:line.
    location: str | None = None


class TargetNotFound(InvalidSpec):
    """A target is neither a file, a folder nor an importable module; the message names it."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "list":
        return _list_command(args)
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
        "--max-examples", type=_positive_int, default=None, metavar="N",
        help="Hypothesis examples per rule, property and dtype (default: the Hypothesis profile's, 100)",
    )
    check.add_argument(
        "--property", action="append", dest="properties", choices=list(PROPERTIES),
        help="check only this property; repeat for several",
    )
    check.add_argument(
        "--rule", action="append", dest="rules", metavar="NAME",
        help="check only the rule named NAME; repeat for several (composition still chains it with every other rule)",
    )
    check.add_argument(
        "--dtype", action="append", dest="dtypes", choices=[d.name for d in SUPPORTED_DTYPES],
        help="check only this dtype; repeat for several (default: each rule's dtypes)",
    )
    check.add_argument(
        "--max-side", type=_positive_int, default=4, metavar="N", help="largest drawn core dimension size (default: 4)",
    )
    check.add_argument("--seed", type=int, default=None, help="seed for Hypothesis's random draws")
    check.add_argument(
        "--timeout", type=_seconds, default=60.0, metavar="SECONDS",
        help="stop an example that runs longer than this and report an error; 0 turns the limit off (default: 60)",
    )
    check.add_argument(
        "--json", dest="json_file", metavar="FILE",
        help="also write the results to FILE as JSON, one record per rule and property",
    )
    check.add_argument(
        "--junit-xml", dest="junit_file", metavar="FILE",
        help="also write the results to FILE as JUnit XML, one test case per rule and property",
    )
    check.add_argument(
        "--jax-cache", metavar="DIR",
        help=(
            "keep JAX's compiled kernels in the folder DIR, so that the next run skips "
            f"compiling them (default: ${JAX_CACHE_VARIABLE}; without either, no cache)"
        ),
    )

    listing = commands.add_parser(
        "list",
        help="list the rules that the targets register, with their signatures",
        description="Import each target and list the rules it registers, without checking them.",
    )
    listing.add_argument("targets", nargs="+", metavar="TARGET", help="a .py file, a folder or a dotted module")
    return parser


def _positive_int(text: str) -> int:
    """Parse an integer of at least 1. argparse adds the option's name to the error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give an integer of at least 1")
    return value


def _seconds(text: str) -> float:
    """Parse a finite number of seconds of at least 0. argparse adds the option's name to the error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: give a number of seconds greater than 0, or 0 to turn the limit off"
        )
    return value


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _check_command(args: argparse.Namespace) -> int:
    console = _console()
    try:
        _require_output_folders(args)
        options = RunOptions(
            max_examples=args.max_examples,
            shapes=ShapeOptions(max_side=args.max_side),
            seed=args.seed,
            timeout=args.timeout or None,
        )
        # Before the targets load, because JAX decides at its first compilation
        # whether to use the cache, and a target may compute at import.
        folder = cache_folder(args.jax_cache)
        if folder:
            enable_jax_cache(folder)
    except InvalidSpec as error:
        console.print(f"[bold magenta]ERROR[/] {escape(str(error))}")
        return EXIT_USAGE

    rules, problems = collect_rules(args.targets)
    if not rules and not problems:
        console.print(_no_rules_message(args.targets), markup=False)
        return EXIT_USAGE
    selected, problems, unknown = _select_rules(rules, problems, args.rules)
    if unknown:
        names = ", ".join(repr(r.name) for r in rules) or "none"
        console.print(
            f"No rule named {', '.join(repr(n) for n in unknown)} is registered by "
            f"{', '.join(args.targets)}; the registered rules are {names}.",
            markup=False,
        )
        return EXIT_USAGE

    start = time.perf_counter()
    results = _run_checks(console, selected, rules, args, options)
    elapsed = time.perf_counter() - start

    console.print(_table(problems, results))
    _print_details(console, problems, results)
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in _LABELS}
    # Every ERROR row counts, as in the --json counts. The exit code counts only the
    # problems that raised, because a target that does not exist gives 2 rather than 3.
    error_rows = counts[ERROR] + len(problems)
    summary = (
        f"{counts[PASSED]} passed, {counts[FAILED]} failed, {_plural(error_rows, 'error')}, "
        f"{counts[NOT_APPLICABLE]} not applicable, "
        + (f"{counts[INCONCLUSIVE]} inconclusive, " if counts[INCONCLUSIVE] else "")
        + f"{_plural(len(selected), 'rule')} in {elapsed:.1f} s"
    )
    console.print(summary)
    raised = counts[ERROR] + sum(not p.usage for p in problems)
    code = _exit_code(counts[FAILED], raised, any(p.usage for p in problems))
    return _write_outputs(console, args, problems, results, code, elapsed)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _exit_code(failed: int, errors: int, usage: bool) -> int:
    if failed:
        return EXIT_FAILED
    if errors:
        return EXIT_ERROR
    if usage:
        return EXIT_USAGE
    return EXIT_OK


def _no_rules_message(targets: Sequence[str]) -> str:
    return (
        f"No rules are registered by {', '.join(targets)}; declare some with "
        "@vjpcheck.rule or vjpcheck.register."
    )


def _select_rules(
    rules: Sequence[Rule], problems: Sequence[Problem], names: Sequence[str] | None,
) -> tuple[list[Rule], list[Problem], list[str]]:
    """Keep the rules named by --rule, and the problems that concern them or every rule.

    Returns the rules to check, the problems to report, and the names that match
    neither a rule nor a declaration that failed.
    """
    if not names:
        return list(rules), list(problems), []
    declared = {r.name for r in rules} | {p.name for p in problems if p.stage == "declaration"}
    unknown = [name for name in dict.fromkeys(names) if name not in declared]
    selected = [r for r in rules if r.name in names]
    kept = [p for p in problems if p.stage != "declaration" or p.name in names]
    return selected, kept, unknown


def _run_checks(
    console: Console, selected: Sequence[Rule], pool: Sequence[Rule], args: argparse.Namespace, options: RunOptions,
) -> list[PropertyResult]:
    """Check each selected rule one property at a time, advancing a progress bar."""
    names = args.properties or list(PROPERTIES)
    results: list[PropertyResult] = []
    with _progress(console) as progress:
        task = progress.add_task("Checking rules", total=len(selected) * len(names))
        for rule in selected:
            for done, name in enumerate(names):
                progress.update(task, description=f"{rule.name} [{name}]")
                try:
                    report = check_report(rule, properties=[name], dtypes=args.dtypes, pool=pool, options=options)
                except InvalidSpec as error:
                    # The declaration is incomplete or invalid, so no property can run.
                    results.append(PropertyResult(rule, "declaration", ERROR, message=str(error)))
                    progress.advance(task, len(names) - done)
                    break
                results.extend(report.results)
                progress.advance(task)
    return results


def _progress(console: Console) -> Progress:
    """Return a progress bar that shows only on a terminal and is cleared when done."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _require_output_folders(args: argparse.Namespace) -> None:
    """Raise InvalidSpec before any check runs if a result file cannot be written."""
    for option, name in (("--json", args.json_file), ("--junit-xml", args.junit_file)):
        if name is None:
            continue
        path = Path(name)
        if path.is_dir():
            raise InvalidSpec(f"{option} {name}: this is a folder; name a file to write the results to.")
        if not path.parent.is_dir():
            raise InvalidSpec(
                f"{option} {name}: the folder {str(path.parent)!r} does not exist; create it first."
            )


def _write_outputs(
    console: Console, args: argparse.Namespace, problems: Sequence[Problem],
    results: Sequence[PropertyResult], code: int, seconds: float,
) -> int:
    """Write the --json and --junit-xml files; return the exit code, raised to 2 if one fails."""
    records = build_records(problems, results)
    try:
        if args.json_file:
            write_json(args.json_file, records, exit_code=code, seconds=seconds, version=__version__)
        if args.junit_file:
            write_junit_xml(args.junit_file, records, seconds=seconds)
    except OSError as error:
        console.print(f"[bold magenta]ERROR[/] writing the results failed: {escape(str(error))}")
        return code if code in (EXIT_FAILED, EXIT_ERROR) else EXIT_USAGE
    return code


def _list_command(args: argparse.Namespace) -> int:
    console = _console()
    rules, problems = collect_rules(args.targets)
    if not rules and not problems:
        console.print(_no_rules_message(args.targets), markup=False)
        return EXIT_USAGE
    table = Table(title="vjpcheck rules")
    table.add_column("Rule")
    table.add_column("Signature")
    table.add_column("Dtypes")
    table.add_column("Location")
    for problem in problems:
        table.add_row(escape(problem.name), f"[{_STYLES[ERROR]}]ERROR[/] ({problem.stage})", "", "")
    for rule in rules:
        table.add_row(
            escape(rule.name),
            escape(rule.describe_signature()),
            ",".join(d.name.replace("float", "f") for d in rule.dtypes),
            escape(rule.location),
        )
    console.print(table)
    _print_details(console, problems, [])
    console.print(_plural(len(rules), "rule"))
    return _exit_code(0, sum(not p.usage for p in problems), any(p.usage for p in problems))


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
    becomes a problem of its own, and the module's other rules are still checked. A
    target that imports but declares no rule is a problem too, unless the targets
    yield no rule and no problem at all, which the caller reports as a whole.
    """
    found: list[Rule | BrokenRule] = []
    problems: list[Problem] = []
    empty: list[Problem] = []
    with collecting():
        for target in targets:
            before = list(default_registry)
            problems_before = len(problems)
            # A module that raised may have declared rules before it did.
            declared = _declared_rules(_import_reporting_failures(target, problems), before)
            if not declared and len(problems) == problems_before:
                empty.append(Problem(target, "target", _no_rules_in_target_message(target)))
            found.extend(r for r in declared if not any(r is f for f in found))
    if found or problems:
        problems.extend(empty)
    for broken in (r for r in found if isinstance(r, BrokenRule)):
        problems.append(Problem(
            broken.name, "declaration", f"{broken.location}: {broken.error}", location=broken.location,
        ))
    # A rule that lacks its backward function, or has one with the wrong parameters, is
    # one declaration problem, not one error per property.
    incomplete = [r for r in found if isinstance(r, Rule) and r.missing]
    for rule in incomplete:
        problems.append(Problem(rule.name, "declaration", f"{rule.location}: {rule.missing}", location=rule.location))
    # A spec that raised but that no declaration used would otherwise go unseen.
    for spec in take_unused_broken_specs():
        problems.append(Problem(spec.location, "declaration", f"{spec.location}: {spec.error}", location=spec.location))
    return [r for r in found if isinstance(r, Rule) and not r.missing], problems


def _import_reporting_failures(target: str, problems: list[Problem]) -> list[ModuleType]:
    """Import a target; return the modules that loaded, and add a problem per failure."""
    try:
        loaded, failures = import_target(target)
    except TargetNotFound as error:
        problems.append(Problem(target, "target", str(error), usage=True))
        return []
    except InvalidSpec as error:
        # A declaration error that the module raised outside any rule declaration, such
        # as a second @rule.vjp: an error in the code, not in the command line.
        problems.append(Problem(target, "import", f"importing {target} failed: {error}"))
        return []
    except Exception as error:  # noqa: BLE001 - any import failure is reported, the others go on
        problems.append(Problem(target, "import", f"importing {target} failed:\n{_import_traceback(error)}"))
        return []
    for name, error in failures:
        problems.append(Problem(name, "import", f"importing {name} failed:\n{_import_traceback(error)}"))
    return loaded


def _declared_rules(modules: Sequence[ModuleType], before: Sequence[Rule | BrokenRule]) -> list[Rule | BrokenRule]:
    """Return the rules, broken ones included, that a target's modules declare.

    These are the rules that joined the default registry while the target was imported,
    and those that the modules hold in global variables, which also finds the rules of
    a module that an earlier target imported already.
    """
    declared = [r for r in default_registry if not any(r is b for b in before)]
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, (Rule, BrokenRule)) and not any(value is r for r in declared):
                declared.append(value)
    return declared


def _no_rules_in_target_message(target: str) -> str:
    return (
        f"No rules are registered by {target}; decorate its ops with @vjpcheck.rule or "
        "call vjpcheck.register in it."
    )


def _import_traceback(error: BaseException) -> str:
    """Format the traceback of a failed import without the frames of the import machinery."""
    machinery = (str(Path(__file__).parent) + os.sep, str(Path(importlib.__file__).parent) + os.sep, "<frozen importlib")
    report = traceback.TracebackException.from_exception(error)
    frames = [frame for frame in report.stack if not frame.filename.startswith(machinery)]
    report.stack = traceback.StackSummary.from_list(frames)
    return "".join(report.format())


def import_target(target: str) -> tuple[list[ModuleType], list[tuple[str, BaseException]]]:
    """Import a .py file, a folder of them, or a dotted module name, with its submodules.

    Returns the modules that loaded and, for a folder or package, the (module name,
    exception) of each one that failed, so that one broken file does not hide the rest.
    Subfolders are searched too. A dotted name is looked up from the current directory
    as well, as `python -m` does.
    """
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.exists():
            raise TargetNotFound(f"no file or folder named {target!r}; check the path.")
        failures: list[tuple[str, BaseException]] = []
        return _import_path(path.resolve(), failures), failures
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as error:
        if error.name and target.startswith(error.name):
            raise TargetNotFound(
                f"{target!r} is neither a file, a folder nor an importable module "
                f"({error}); pass a path, or install the package that provides it."
            ) from None
        raise
    failures = []
    return [module, *_submodules(module, failures)], failures


def _import_path(path: Path, failures: list[tuple[str, BaseException]]) -> list[ModuleType]:
    if path.is_dir():
        if (path / "__init__.py").exists():
            module = _import_by_name(path)
            return [module, *_submodules(module, failures)]
        modules = []
        for child in sorted(path.iterdir()):
            if child.name.startswith((".", "_")) or not (child.suffix == ".py" or child.is_dir()):
                continue
            try:
                modules.extend(_import_path(child, failures))
            except Exception as error:  # noqa: BLE001 - one broken file does not stop the others
                failures.append((str(child), error))
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


def _submodules(module: ModuleType, failures: list[tuple[str, BaseException]]) -> list[ModuleType]:
    if not hasattr(module, "__path__"):
        return []
    modules = []
    for info in pkgutil.walk_packages(module.__path__, prefix=module.__name__ + ".", onerror=lambda name: None):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as error:  # noqa: BLE001 - one broken module does not stop the others
            failures.append((info.name, error))
    return modules
