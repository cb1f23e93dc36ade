"""The pytest plugin, driven through pytest's own pytester fixture.

Each test writes a small project (rules module, ini file, conftest) into a temporary
folder and runs pytest on it in this process, with a profile of few examples.
"""

import importlib.metadata
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree

import hypothesis
import hypothesis.core
import jax
import pytest

import vjpcheck as vc
from vjpcheck._pytest_plugin import _jax_cache_folder, run_options

pytest_plugins = ["pytester"]

DOUBLE = '''
import vjpcheck as vc

@vc.rule("(n)->(n)", dtypes=["float32"])
def plugin_double(x):
    return 2.0 * x

@plugin_double.vjp
def _(x, out, g):
    return (2.0 * g,)
'''

WRONG_LINEAR = '''
import jax.numpy as jnp
import vjpcheck as vc

@vc.rule("(h,d),(d),(h)->(h)", data="x", dtypes=["float32"])
def plugin_wrong_linear(W, x, b):
    return W @ x + b

@plugin_wrong_linear.vjp
def _(W, x, b, out, g):
    return jnp.outer(x, g).reshape(W.shape), W.T @ g, g
'''

RAISES = '''
import vjpcheck as vc

@vc.rule("(n)->(n)", dtypes=["float32"])
def plugin_raises(x):
    return 2.0 * x

@plugin_raises.vjp
def _(x, out, g):
    raise ValueError("the backward rule is not written yet")
'''

BAD_DECLARATION = '''
import vjpcheck as vc

@vc.rule("(n)->(n)", specs={"y": vc.real()})
def plugin_bad_specs(x):
    return x
'''

PROFILES = '''
import hypothesis

hypothesis.settings.register_profile("tiny", max_examples=10, database=None, derandomize=True)
'''


@pytest.fixture(autouse=True)
def restore_global_state():
    """Undo what the runs inside a test change in this process: rules, profiles, seed."""
    rules = list(vc.default_registry)
    profile = hypothesis.settings.get_current_profile_name()
    ci = hypothesis.settings.get_profile("ci")
    seed = hypothesis.core.global_force_seed
    yield
    for rule in list(vc.default_registry):
        if not any(rule is r for r in rules):
            vc.default_registry.remove(rule)
    hypothesis.settings.register_profile("ci", ci)
    hypothesis.settings.load_profile(profile)
    hypothesis.core.global_force_seed = seed


@pytest.fixture
def project(pytester):
    """A project whose ini setting names ops.py, with the profile ``tiny``."""
    pytester.makeconftest(PROFILES)
    pytester.makeini("[pytest]\nvjpcheck_targets = ops.py\n")
    return pytester


def run(pytester, *args):
    return pytester.runpytest("--hypothesis-profile=tiny", "-p", "no:cacheprovider", *args)


def outcomes_by_id(report_path):
    """Read a JUnit XML report into {test id: outcome}."""
    outcomes = {}
    for case in ElementTree.parse(report_path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return outcomes


def draws(result):
    return [line for line in result.outlines if line.startswith("Draw ")]


# ----------------------------------------------------------------------------------
# Loading


def test_entry_point_names_plugin():
    entry_points = importlib.metadata.entry_points(group="pytest11", name="vjpcheck")
    assert [ep.value for ep in entry_points] == ["vjpcheck._pytest_plugin"]


def test_import_loads_no_jax():
    code = (
        "import sys, vjpcheck._pytest_plugin\n"
        "print(sorted(m for m in ('jax', 'hypothesis', 'numpy') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_without_targets_adds_nothing(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert "vjpcheck" not in result.stdout.str()


# ----------------------------------------------------------------------------------
# Collection


def test_item_per_rule_and_property(project):
    project.makepyfile(ops=DOUBLE)
    result = run(project, "--collect-only", "-q")
    ids = [line for line in result.outlines if line.startswith("vjpcheck::")]
    assert ids == [f"vjpcheck::plugin_double[{name}]" for name in vc.PROPERTIES]
    assert result.ret == 0


def test_file_argument_leaves_out_ini_targets(project):
    project.makepyfile(ops=DOUBLE, test_plain="def test_plain():\n    assert True\n")
    result = run(project, "test_plain.py", "--collect-only", "-q")
    assert "vjpcheck::" not in result.stdout.str()
    assert "test_plain.py::test_plain" in result.stdout.str()


def test_option_adds_target(pytester):
    pytester.makeconftest(PROFILES)
    pytester.makepyfile(ops=DOUBLE, test_plain="def test_plain():\n    assert True\n")
    result = run(pytester, "test_plain.py", "--vjpcheck", "ops.py", "-k", "plain or structure", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["vjpcheck::plugin_double[[]structure[]] PASSED*"])


def test_keyword_selects_property(project):
    project.makepyfile(ops=DOUBLE)
    result = run(project, "-v", "-k", "matches_autodiff")
    result.assert_outcomes(passed=1, deselected=len(vc.PROPERTIES) - 1)
    result.stdout.fnmatch_lines(["vjpcheck::plugin_double[[]matches_autodiff[]] PASSED*"])


# ----------------------------------------------------------------------------------
# Outcomes


def test_failure_shows_report(project):
    project.makepyfile(ops=WRONG_LINEAR)
    result = run(project, "-k", "matches_autodiff")
    assert result.ret == 1
    result.assert_outcomes(failed=1, deselected=len(vc.PROPERTIES) - 1)
    output = result.stdout.str()
    assert re.search(r"Rule 'plugin_wrong_linear' \(ops\.py:\d+\) failed property 'matches_autodiff'\.", output)
    assert "To replay this example: vjpcheck.check(plugin_wrong_linear" in output
    assert "@reproduce_failure" not in output
    assert "Traceback" not in output
    assert "_check.py" not in output


def test_rule_error_fails_with_message(project):
    project.makepyfile(ops=RAISES)
    result = run(project, "-k", "structure")
    assert result.ret == 1
    result.assert_outcomes(failed=1)
    assert "ValueError: the backward rule is not written yet" in result.stdout.str()


def test_not_applicable_is_skip(project):
    project.makepyfile(ops=DOUBLE)
    result = run(project, "-k", "flattening", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] ops.py:*: not applicable: the rule has no matrix input"])


def test_declaration_error_is_item(project):
    project.makepyfile(ops=BAD_DECLARATION + DOUBLE)
    result = run(project, "-k", "declaration or structure")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert "FAILED vjpcheck::plugin_bad_specs[declaration]" in output
    assert "specs name ['y'], which are not arguments" in output


def test_import_error_is_item(project):
    project.makepyfile(ops="raise RuntimeError('this module is broken')\n")
    result = run(project)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "FAILED vjpcheck::ops.py[import]" in output
    assert "RuntimeError: this module is broken" in output
    assert "_cli.py" not in output


def test_missing_target_is_item(pytester):
    pytester.makeconftest(PROFILES)
    pytester.makeini("[pytest]\nvjpcheck_targets = vjpcheck_plugin_no_such_module\n")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    assert "is neither a file, a folder nor an importable module" in result.stdout.str()


def test_missing_file_named_once(pytester):
    pytester.makeconftest(PROFILES)
    pytester.makeini("[pytest]\nvjpcheck_targets = missing.py\n")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    messages = [line for line in result.outlines if "no file or folder named" in line and not line.startswith("FAILED")]
    assert messages == [f"no file or folder named {str(pytester.path / 'missing.py')!r}; check the path."]


def test_module_without_rules_fails(project):
    project.makepyfile(ops="x = 1\n")
    result = run(project)
    result.assert_outcomes(failed=1)
    assert "No rules are registered by ops.py" in result.stdout.str()


def test_target_without_rules_is_item(pytester):
    pytester.makeconftest(PROFILES)
    pytester.makepyfile(ops=DOUBLE, empty="x = 1\n")
    result = run(pytester, "--vjpcheck", "empty.py", "--vjpcheck", "ops.py", "-k", "empty or structure")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert "FAILED vjpcheck::empty.py[target]" in output
    assert "No rules are registered by empty.py; decorate its ops with @vjpcheck.rule" in output


def test_ordinary_check_test_runs(project):
    project.makepyfile(
        ops=DOUBLE,
        test_uses_check=(
            "import vjpcheck as vc\nfrom ops import plugin_double\n\n"
            "def test_check():\n"
            "    assert vc.check(plugin_double, properties=['structure'], max_examples=3)\n"
        ),
    )
    result = run(project, "-k", "test_check or structure")
    result.assert_outcomes(passed=2)


# ----------------------------------------------------------------------------------
# pytest and Hypothesis conventions


def test_last_failed_reruns_failures(project):
    project.makepyfile(ops=DOUBLE + RAISES)
    args = ("--hypothesis-profile=tiny", "-k", "structure")
    first = project.runpytest(*args)
    first.assert_outcomes(passed=1, failed=1)
    again = project.runpytest(*args, "--lf", "-v")
    again.assert_outcomes(failed=1, deselected=2 * len(vc.PROPERTIES) - 1)
    again.stdout.fnmatch_lines(["vjpcheck::plugin_raises[[]structure[]] FAILED*"])


def test_xdist_matches_serial_outcomes(project):
    project.makepyfile(ops=WRONG_LINEAR)
    selection = ("-k", "structure or matches_autodiff")
    run(project, *selection, "--junitxml=serial.xml")
    run(project, *selection, "-n", "2", "--junitxml=parallel.xml")
    serial = outcomes_by_id(project.path / "serial.xml")
    assert serial == {
        "vjpcheck::plugin_wrong_linear[structure]": "passed",
        "vjpcheck::plugin_wrong_linear[matches_autodiff]": "failure",
    }
    assert outcomes_by_id(project.path / "parallel.xml") == serial


def test_seed_option_reaches_check(pytester):
    assert run_options(pytester.parseconfig("--hypothesis-seed=123")).seed == 123
    assert run_options(pytester.parseconfig("--hypothesis-seed=abc")).seed == "abc"
    assert run_options(pytester.parseconfig()).seed is None


def test_same_seed_same_example(project):
    project.makepyfile(ops=WRONG_LINEAR)
    project.makeconftest(
        "import hypothesis\n"
        "hypothesis.settings.register_profile('random', max_examples=10, database=None, derandomize=False)\n"
    )
    args = ("--hypothesis-profile=random", "--hypothesis-seed=7", "-k", "matches_autodiff")
    first = project.runpytest(*args)
    second = project.runpytest(*args)
    first.assert_outcomes(failed=1)
    assert draws(first)
    assert draws(first) == draws(second)


def test_ci_profile_registered(pytester):
    # This session's own configure hook has replaced Hypothesis's ci profile already;
    # put Hypothesis's back (a private attribute) to see the replacement happen.
    builtin = hypothesis._settings.CI
    hypothesis.settings.register_profile("ci", builtin)
    pytester.parseconfigure()
    ci = hypothesis.settings.get_profile("ci")
    assert ci is not builtin
    assert ci.derandomize is True
    assert ci.max_examples == 200
    assert ci.deadline is None
    assert ci.print_blob is True


def test_project_ci_profile_kept(pytester):
    hypothesis.settings.register_profile("ci", max_examples=7)
    pytester.parseconfigure()
    assert hypothesis.settings.get_profile("ci").max_examples == 7


def test_ci_profile_loads(project):
    project.makepyfile(ops=DOUBLE)
    result = project.runpytest("--hypothesis-profile=ci", "-k", "structure", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["hypothesis profile 'ci' -> *max_examples=200*"])


def test_show_statistics_per_dtype(project):
    project.makepyfile(ops=DOUBLE)
    result = run(project, "--hypothesis-show-statistics", "-k", "structure")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*Hypothesis Statistics*",
        "vjpcheck::plugin_double[[]structure[]] (float32):",
        "*10 passing, 0 failing*",
    ])


def test_database_replays_failure(project):
    project.makepyfile(ops=WRONG_LINEAR)
    project.makeconftest(textwrap.dedent('''
        import hypothesis
        from hypothesis import Phase
        from hypothesis.database import DirectoryBasedExampleDatabase

        # A profile starts from the loaded one, which may be derandomized, and a
        # derandomized run neither reads nor writes the database.
        database = DirectoryBasedExampleDatabase("examples-db")
        hypothesis.settings.register_profile(
            "search", max_examples=30, database=database, derandomize=False)
        hypothesis.settings.register_profile(
            "replay", database=database, derandomize=False, phases=[Phase.reuse])
    '''))
    selection = ("-k", "matches_autodiff", "-p", "no:cacheprovider")
    search = project.runpytest("--hypothesis-profile=search", *selection)
    replay_after = project.runpytest("--hypothesis-profile=replay", *selection)
    search.assert_outcomes(failed=1)
    replay_after.assert_outcomes(failed=1)
    assert draws(replay_after) == draws(search)


# ----------------------------------------------------------------------------------
# JAX compilation cache


def test_cache_option_over_variable(pytester, monkeypatch, tmp_path):
    pytester.makeini("[pytest]\nvjpcheck_jax_cache = from-ini\n")
    monkeypatch.delenv("VJPCHECK_JAX_CACHE", raising=False)
    assert _jax_cache_folder(pytester.parseconfig()) == pytester.path / "from-ini"
    monkeypatch.setenv("VJPCHECK_JAX_CACHE", str(tmp_path / "from-env"))
    assert _jax_cache_folder(pytester.parseconfig()) == str(tmp_path / "from-env")
    option = pytester.parseconfig("--vjpcheck-jax-cache", "from-option")
    assert _jax_cache_folder(option) == "from-option"


@pytest.fixture
def restore_jax_cache_config():
    names = [
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    ]
    saved = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


def test_cache_option_configures_jax(pytester, restore_jax_cache_config):
    pytester.parseconfigure("--vjpcheck-jax-cache", "jax-cache")
    assert jax.config.jax_compilation_cache_dir == str(pytester.path / "jax-cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
    assert (pytester.path / "jax-cache").is_dir()


def test_unwritable_cache_is_usage_error(pytester):
    (pytester.path / "taken").write_text("a file, not a folder")
    result = pytester.runpytest("--vjpcheck-jax-cache", "taken/cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert re.search(r"cannot create the JAX compilation cache folder", result.stderr.str())
