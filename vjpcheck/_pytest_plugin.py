"""The pytest plugin: one test item per registered rule and property.

pytest loads this module through the ``pytest11`` entry point. The ``vjpcheck_targets``
ini setting and ``--vjpcheck TARGET`` name modules or paths, read as ``vjpcheck check``
reads its targets, and each rule they register becomes one item per property, such as
``vjpcheck::linear[matches_autodiff]``. The items join a run that collects a folder
(plain ``pytest``, ``testpaths`` or a folder argument). A run limited to named files
or test ids leaves out the ini setting's targets, and still checks the targets
named by ``--vjpcheck``.

Importing this module imports only pytest: JAX, Hypothesis and the rest of vjpcheck
load when a hook needs them, after the project's conftest files have set up JAX.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

_NODE_NAME = "vjpcheck"
_CI_PROFILE = {"derandomize": True, "max_examples": 200, "deadline": None, "print_blob": True}


class VjpcheckFailure(Exception):
    """A property failed or could not run; the message is the vjpcheck report."""


# ----------------------------------------------------------------------------------
# Options and configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vjpcheck", "vjpcheck: property-based tests of VJP rules")
    group.addoption(
        "--vjpcheck", action="append", default=[], dest="vjpcheck_targets", metavar="TARGET",
        help=(
            "check the rules that TARGET registers (a .py file, a folder or a dotted module "
            "name), one test per rule and property; repeat for several. Adds to the "
            "vjpcheck_targets ini setting."
        ),
    )
    group.addoption(
        "--vjpcheck-jax-cache", dest="vjpcheck_jax_cache", metavar="DIR", default=None,
        help=(
            "keep JAX's compiled kernels in the folder DIR across runs (default: "
            "$VJPCHECK_JAX_CACHE, then the vjpcheck_jax_cache ini setting)"
        ),
    )
    parser.addini(
        "vjpcheck_targets", type="args", default=[],
        help="modules or paths (relative to the rootdir) whose registered rules vjpcheck checks",
    )
    parser.addini(
        "vjpcheck_jax_cache", type="string", default="",
        help="folder (relative to the rootdir) for JAX's persistent compilation cache",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: Hypothesis's own configure hook loads --hypothesis-profile, which may
    # name the ci profile registered here.
    config.addinivalue_line("markers", "vjpcheck: a property of a VJP rule, checked by vjpcheck")
    register_ci_profile()
    folder = _jax_cache_folder(config)
    if folder is not None:
        from vjpcheck._errors import InvalidSpec
        from vjpcheck._jax_cache import enable_jax_cache

        try:
            enable_jax_cache(folder)
        except InvalidSpec as error:
            raise pytest.UsageError(str(error)) from None


def register_ci_profile() -> None:
    """Register the Hypothesis profile ``ci``: derandomized, 200 examples, no deadline.

    It replaces the ``ci`` profile that Hypothesis itself registers, and keeps that
    profile's other settings. A ``ci`` profile that the project registered first (in a
    conftest.py, say) is left as it is.
    """
    import hypothesis
    from hypothesis.errors import InvalidArgument

    try:
        existing = hypothesis.settings.get_profile("ci")
    except InvalidArgument:
        existing = None
    # NOTE: Hypothesis keeps its own ci profile in a private attribute. Where a version
    # lacks it, an existing ci profile counts as the project's and is kept.
    builtin = getattr(getattr(hypothesis, "_settings", None), "CI", None)
    if existing is not None and existing is not builtin:
        return
    hypothesis.settings.register_profile("ci", existing, **_CI_PROFILE)


def _jax_cache_folder(config: pytest.Config) -> Path | str | None:
    from vjpcheck._jax_cache import cache_folder

    setting = config.getini("vjpcheck_jax_cache")
    return cache_folder(
        config.getoption("vjpcheck_jax_cache"),
        config.rootpath / setting if setting else None,
    )


# ----------------------------------------------------------------------------------
# Collection


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Add the vjpcheck collector to what the session collects, after its folders."""
    report = yield
    if isinstance(collector, pytest.Session) and report.passed:
        targets = _targets(collector.config)
        if targets:
            collector_node = RuleCollector.from_parent(collector, name=_NODE_NAME, nodeid=_NODE_NAME, targets=targets)
            report.result.append(collector_node)
    return report


def _targets(config: pytest.Config) -> dict[str, str]:
    """Map each target to check to its name in item ids.

    The ini setting's targets count when the run collects a folder, read against the
    rootdir; those of --vjpcheck always count, read against the invocation folder.
    """
    targets: dict[str, str] = {}
    if _collects_a_folder(config):
        for target in config.getini("vjpcheck_targets"):
            targets.setdefault(_resolve_ini_target(config.rootpath, target), target)
    for target in config.getoption("vjpcheck_targets") or []:
        targets.setdefault(target, target)
    return targets


def _collects_a_folder(config: pytest.Config) -> bool:
    # When the command line names no paths, config.args contains what pytest collects
    # instead: testpaths or the invocation folder. pytest-xdist passes them to its workers.
    root = config.invocation_params.dir
    return any((root / arg.split("::")[0]).is_dir() for arg in config.args)


def _resolve_ini_target(rootdir: Path, target: str) -> str:
    """Read a path in the ini setting against the rootdir, as pytest reads testpaths."""
    path = rootdir / target
    if target.endswith(".py") or path.exists():
        return str(path)
    return target


class RuleCollector(pytest.Collector):
    """The rules that the targets register, one item per rule and property."""

    def __init__(self, *, targets: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Each target, as collect_rules reads it, and as the ini setting or option gave it.
        self.targets = dict(targets)

    def collect(self) -> list[pytest.Item]:
        from vjpcheck._cli import collect_rules
        from vjpcheck._properties import PROPERTIES

        rules, problems = collect_rules(list(self.targets))
        items: list[pytest.Item] = [
            self._item(ProblemItem, f"{self.targets.get(p.name, p.name)}[{p.stage}]", message=p.message)
            for p in problems
        ]
        if not rules and not problems:
            target_names = ", ".join(self.targets.values())
            message = (
                f"No rules are registered by {target_names}; declare some with @vjpcheck.rule "
                "or vjpcheck.register, or name other targets in the vjpcheck_targets ini "
                "setting or with --vjpcheck."
            )
            items.append(self._item(ProblemItem, f"{target_names}[collect]", message=message))
        names: set[str] = set()
        for rule in rules:
            # Rules from separate registries may share a name, so the location is added.
            label = rule.name if rule.name not in names else f"{rule.name} ({rule.location})"
            names.add(label)
            for property_name in PROPERTIES:
                items.append(self._item(
                    RuleItem, f"{label}[{property_name}]", rule=rule,
                    property_name=property_name, pool=rules,
                ))
        return items

    def _item(self, cls: type[_VjpcheckItem], name: str, **kwargs: Any) -> _VjpcheckItem:
        # pytest 9 parses "name[param]" in a cached id (for --lf) into a name and a
        # parameter, but builds a child's id from its whole name. An id passed as text
        # is parsed the same way as the cache, so the two ids compare equal.
        return cls.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}", **kwargs)


# ----------------------------------------------------------------------------------
# Items


class _VjpcheckItem(pytest.Item):
    """An item whose failure text is a vjpcheck report, marked ``vjpcheck``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker("vjpcheck")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """Show the vjpcheck report in place of a traceback through vjpcheck."""
        if isinstance(excinfo.value, VjpcheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"vjpcheck: {self.name}"


class RuleItem(_VjpcheckItem):
    """One property of one rule, checked in each of the rule's dtypes."""

    def __init__(self, *, rule: Any, property_name: str, pool: Sequence[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule
        self.property_name = property_name
        self.pool = pool

    def runtest(self) -> None:
        from vjpcheck._check import ERROR, FAILED, INCONCLUSIVE, NOT_APPLICABLE, check_report
        from vjpcheck._errors import InvalidSpec

        try:
            with _statistics(self):
                report = check_report(
                    self.rule, properties=[self.property_name], pool=self.pool,
                    options=run_options(self.config),
                )
        except InvalidSpec as error:
            raise VjpcheckFailure(str(error)) from None
        result = report.results[0]
        self.user_properties += [("dtypes", ",".join(d.name for d in result.dtypes)), ("examples", result.examples)]
        if result.outcome == NOT_APPLICABLE:
            # The item's location, the rule's declaration, is what the skip summary shows.
            raise pytest.skip.Exception(f"not applicable: {result.message}", _use_item_location=True)
        if result.outcome == INCONCLUSIVE:
            raise pytest.skip.Exception(f"inconclusive: {result.message}", _use_item_location=True)
        if result.outcome in (FAILED, ERROR):
            raise VjpcheckFailure(result.message)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        path, _, line = self.rule.location.rpartition(":")
        if path and line.isdigit() and Path(path).is_file():
            return Path(path).absolute(), int(line) - 1, f"vjpcheck: {self.name}"
        return super().reportinfo()


class ProblemItem(_VjpcheckItem):
    """A target that did not import or has no rules, or a declaration that raised, as a failing item."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise VjpcheckFailure(self.message)


def run_options(config: pytest.Config) -> Any:
    """Build the RunOptions for the items; --hypothesis-seed becomes their seed.

    Hypothesis's own plugin passes --hypothesis-seed on as a global seed, which
    ``derandomize=True`` (as in the ci profile) overrides. Passed as the seed of each
    check, it takes effect under every profile, as Hypothesis's ``@seed`` does.
    """
    from vjpcheck._check import RunOptions

    seed = config.getoption("hypothesis_seed", default=None)
    if seed is not None:
        try:
            seed = int(seed)
        except ValueError:
            pass
    return RunOptions(seed=seed)


@contextlib.contextmanager
def _statistics(item: RuleItem) -> Iterator[None]:
    """Keep Hypothesis's statistics of each dtype's run for --hypothesis-show-statistics.

    Hypothesis's pytest plugin prints ``item.hypothesis_statistics`` at the end of
    the session. Its wrapper around ordinary test calls, which collects them, does not
    run for these items, so this collects them the same way.
    """
    try:
        from hypothesis.statistics import collector, describe_statistics
    except ImportError:
        yield
        return
    runs: list[dict] = []
    with collector.with_value(runs.append):
        yield
    texts = []
    for stats, dtype in zip(runs, item.rule.dtypes):
        stats["nodeid"] = f"{item.nodeid} ({dtype.name})"
        texts.append(describe_statistics(stats))
    if texts:
        item.hypothesis_statistics = "\n\n".join(texts)
