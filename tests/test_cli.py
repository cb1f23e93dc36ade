"""The vjpcheck command: targets, the table, exit codes, failure reports and CI files."""

import contextlib
import io
import json
import re
import textwrap
import xml.etree.ElementTree as ElementTree

import jax
import pytest
from rich.console import Console

import vjpcheck as vc
from vjpcheck._cli import _parser, _progress, main

GOOD_MODULE = '''
import jax.numpy as jnp
import vjpcheck as vc

@vc.rule("(h,d),(d),(h)->(h)", data="x")
def {name}(W, x, b):
    return W @ x + b

@{name}.vjp
def _(W, x, b, out, g):
    return {weight_grad}, W.T @ g, g
'''


def write_module(tmp_path, filename, name, weight_grad):
    path = tmp_path / filename
    path.write_text(textwrap.dedent(GOOD_MODULE.format(name=name, weight_grad=weight_grad)))
    return path


@pytest.fixture(autouse=True)
def forget_registered_rules():
    before = list(vc.default_registry)
    yield
    for rule in list(vc.default_registry):
        if not any(rule is b for b in before):
            vc.default_registry.remove(rule)


def run(capsys, *args):
    code = main(["check", *args])
    return code, capsys.readouterr().out


def test_passing_module_exits_zero(tmp_path, capsys):
    path = write_module(tmp_path, "cli_good.py", "cli_good_linear", "jnp.outer(g, x)")
    code, out = run(capsys, str(path), "--max-examples", "5", "--property", "matches_autodiff", "--max-side", "3")
    assert code == 0
    assert "cli_good_linear" in out
    assert "PASS" in out
    assert "1 passed, 0 failed, 0 errors, 0 not applicable, 1 rule in" in out


def test_reshaped_weight_grad_exits_one(tmp_path, capsys):
    path = write_module(tmp_path, "cli_reshaped.py", "cli_reshaped_linear", "jnp.outer(x, g).reshape(W.shape)")
    code, out = run(capsys, str(path), "--max-examples", "30", "--property", "matches_autodiff", "--max-side", "3")
    assert code == 1
    assert "FAIL" in out
    assert "Rule 'cli_reshaped_linear'" in out
    assert "failed property 'matches_autodiff'" in out
    assert "Cotangent for 'W' (input 0)" in out
    sizes = re.search(r"Draw 1 \(core dimension sizes\): \{'h': (\d), 'd': (\d)\}", out)
    assert sizes.group(1) != sizes.group(2)
    assert "To replay this example: vjpcheck.check(cli_reshaped_linear" in out
    assert "@reproduce_failure" not in out


def test_transposed_weight_grad_fails_structure(tmp_path, capsys):
    path = write_module(tmp_path, "cli_transposed.py", "cli_transposed_linear", "jnp.outer(x, g)")
    code, out = run(capsys, str(path), "--max-examples", "30", "--property", "structure", "--max-side", "3")
    assert code == 1
    assert "failed property 'structure'" in out
    assert re.search(r"cotangent for 'W' \(input 0\) is f32\[(\d),(\d)\]; expected f32\[\2,\1\]", out)


def test_missing_target_reported(tmp_path, capsys):
    code, out = run(capsys, str(tmp_path / "absent.py"))
    assert code == 2
    assert "no file or folder named" in out


def test_unimportable_module_reported(capsys):
    code, out = run(capsys, "vjpcheck_no_such_module")
    assert code == 2
    assert "'vjpcheck_no_such_module' is neither a file, a folder nor an importable module" in out


def test_import_error_shows_traceback(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('this module is broken')\n")
    code, out = run(capsys, str(path))
    assert code == 3
    assert "importing" in out
    assert "RuntimeError: this module is broken" in out


def test_module_without_rules_reported(tmp_path, capsys):
    path = tmp_path / "empty_module.py"
    path.write_text("x = 1\n")
    code, out = run(capsys, str(path))
    assert code == 2
    assert "No rules are registered by" in out


def test_target_without_rules_beside_rules(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli_no_rules.py").write_text("x = 1\n")
    write_module(tmp_path, "cli_beside.py", "cli_beside_linear", "jnp.outer(g, x)")
    code, out = run(capsys, "cli_no_rules.py", "cli_beside.py", "--max-examples", "3", "--property", "structure")
    assert code == 3
    assert "cli_beside_linear" in out
    assert re.search(r"│ cli_no_rules\.py\s*│ target\s*│ ERROR", out)
    assert "No rules are registered by cli_no_rules.py; decorate its ops with @vjpcheck.rule" in out


def test_folder_reports_only_named_target(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cli_partly_empty"
    folder.mkdir()
    (folder / "cli_partly_helpers.py").write_text("x = 1\n")
    write_module(folder, "cli_partly_layer.py", "cli_partly_empty_linear", "jnp.outer(g, x)")
    empty_folder = tmp_path / "cli_empty_folder"
    empty_folder.mkdir()
    (empty_folder / "cli_empty_one.py").write_text("x = 1\n")
    (empty_folder / "cli_empty_two.py").write_text("y = 2\n")
    code, out = run(capsys, "cli_partly_empty", "cli_empty_folder", "--max-examples", "3", "--property", "structure")
    assert code == 3
    assert "cli_partly_helpers.py" not in out
    assert "cli_empty_one.py" not in out
    assert "No rules are registered by cli_empty_folder;" in out
    assert out.count("No rules are registered by") == 1


def test_rules_before_import_error_kept(tmp_path, capsys):
    path = write_module(tmp_path, "cli_half_broken.py", "cli_half_broken_linear", "jnp.outer(g, x)")
    path.write_text(path.read_text() + "\nraise RuntimeError('this module breaks after its rule')\n")
    code, out = run(capsys, str(path), "--max-examples", "3", "--property", "structure")
    assert code == 3
    assert re.search(r"cli_half_broken_linear\s*│ structure\s*│ PASS", out)
    assert "RuntimeError: this module breaks after its rule" in out
    assert "No rules are registered by" not in out


# The first declaration becomes a declaration error. The second raises while the module
# is imported, so the file becomes an error of its own.
TWO_BROKEN_DECLARATIONS = """
import vjpcheck as vc

@vc.rule("(n)->(n)", specs={"y": vc.real()})
def cli_broken_specs(x):
    return x

@vc.rule("(n)->(n)", frobnicate=True)
def cli_broken_option(x):
    return x
"""


def test_summary_counts_every_error_row(tmp_path, capsys):
    path = tmp_path / "cli_two_broken.py"
    path.write_text(TWO_BROKEN_DECLARATIONS)
    code, out = run(capsys, str(path), "--json", str(tmp_path / "out.json"))
    counts = json.loads((tmp_path / "out.json").read_text())["counts"]
    assert code == 3
    assert out.count(" ERROR ") == 2
    assert "0 passed, 0 failed, 2 errors, 0 not applicable, 0 rules in" in out
    assert counts["error"] == 2


def test_summary_counts_missing_target(tmp_path, capsys):
    good = write_module(tmp_path, "cli_counted.py", "cli_counted_linear", "jnp.outer(g, x)")
    args = ("--max-examples", "3", "--property", "structure", "--json", str(tmp_path / "out.json"))
    code, out = run(capsys, str(tmp_path / "absent.py"), str(good), *args)
    counts = json.loads((tmp_path / "out.json").read_text())["counts"]
    assert code == 2
    assert "1 passed, 0 failed, 1 error, 0 not applicable, 1 rule in" in out
    assert counts["error"] == 1


def test_folder_target_imports_package(tmp_path, capsys):
    package = tmp_path / "cli_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_module(package, "layer.py", "cli_package_linear", "jnp.outer(g, x)")
    code, out = run(capsys, str(package), "--max-examples", "5", "--property", "structure")
    assert code == 0
    assert "cli_package_linear" in out


# ----------------------------------------------------------------------------------
# Result files, rule selection, listing, the JAX cache


TWO_RULES = '''
import jax.numpy as jnp
import vjpcheck as vc

@vc.rule("(n)->(n)", dtypes=["float32"])
def cli_ci_double(x):
    return 2.0 * x

@cli_ci_double.vjp
def _(x, out, g):
    return (2.0 * g,)

@vc.rule("(h,d),(d),(h)->(h)", data="x", dtypes=["float32"])
def cli_ci_wrong_linear(W, x, b):
    return W @ x + b

@cli_ci_wrong_linear.vjp
def _(W, x, b, out, g):
    return jnp.outer(x, g).reshape(W.shape), W.T @ g, g
'''

CI_PROPERTIES = ("structure", "matches_autodiff", "flattening")


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """Run vjpcheck check once on two rules, writing JSON and JUnit XML; return the paths."""
    folder = tmp_path_factory.mktemp("ci_run")
    module = folder / "cli_ci_rules.py"
    module.write_text(textwrap.dedent(TWO_RULES))
    before = list(vc.default_registry)
    args = ["check", str(module), "--max-examples", "10", "--max-side", "3"]
    args += [f"--property={name}" for name in CI_PROPERTIES]
    args += ["--json", str(folder / "out.json"), "--junit-xml", str(folder / "out.xml")]
    with contextlib.redirect_stdout(io.StringIO()) as output:
        code = main(args)
    for rule in list(vc.default_registry):
        if not any(rule is b for b in before):
            vc.default_registry.remove(rule)
    return {"code": code, "output": output.getvalue(), "json": folder / "out.json", "xml": folder / "out.xml"}


def test_junit_xml_case_per_property(ci_run):
    assert ci_run["code"] == 1
    root = ElementTree.parse(ci_run["xml"]).getroot()
    cases = {(case.get("classname"), case.get("name")): case for case in root.iter("testcase")}
    expected = {(rule, name) for rule in ("cli_ci_double", "cli_ci_wrong_linear") for name in CI_PROPERTIES}
    assert set(cases) == expected
    assert root.get("tests") == "6"
    assert root.get("failures") == "2"
    assert root.get("skipped") == "1"


def test_junit_xml_outcomes(ci_run):
    root = ElementTree.parse(ci_run["xml"]).getroot()
    cases = {(case.get("classname"), case.get("name")): case for case in root.iter("testcase")}
    failure = cases[("cli_ci_wrong_linear", "matches_autodiff")].find("failure")
    assert "failed property 'matches_autodiff'" in failure.text
    assert failure.get("message").startswith("Rule 'cli_ci_wrong_linear'")
    skipped = cases[("cli_ci_double", "flattening")].find("skipped")
    assert skipped.get("message") == "the rule has no matrix input"
    passed = cases[("cli_ci_double", "structure")]
    assert [child.tag for child in passed] == ["system-out"]


def test_json_record_per_property(ci_run):
    document = json.loads(ci_run["json"].read_text())
    assert document["exit_code"] == 1
    assert document["counts"] == {"passed": 3, "failed": 2, "error": 0, "not applicable": 1, "inconclusive": 0}
    records = {(r["rule"], r["property"]): r for r in document["results"]}
    assert len(records) == 6
    passed = records[("cli_ci_double", "matches_autodiff")]
    assert passed["outcome"] == "passed"
    assert passed["dtypes"] == ["float32"]
    assert passed["examples"] == 10
    assert passed["discarded"] == {}
    assert 0 <= passed["worst_error_ratio"] <= 1
    assert passed["seconds"] >= 0
    assert passed["message"] == ""
    failed = records[("cli_ci_wrong_linear", "matches_autodiff")]
    assert failed["outcome"] == "failed"
    assert "Cotangent for 'W' (input 0)" in failed["message"]
    assert records[("cli_ci_double", "flattening")]["worst_error_ratio"] is None


def test_progress_off_without_terminal(ci_run):
    assert "\x1b[" not in ci_run["output"]
    assert _progress(Console(file=io.StringIO())).disable
    assert not _progress(Console(file=io.StringIO(), force_terminal=True)).disable


def test_dtype_option_takes_supported_dtypes():
    parser = _parser()
    for name in ("float32", "float64", "bfloat16", "float16"):
        assert parser.parse_args(["check", "rules", "--dtype", name]).dtypes == [name]


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--max-side", "0", "argument --max-side: invalid value '0': give an integer of at least 1"),
        ("--max-side", "two", "argument --max-side: invalid value 'two': give an integer of at least 1"),
        ("--max-examples", "0", "argument --max-examples: invalid value '0': give an integer of at least 1"),
        ("--max-examples", "2.5", "argument --max-examples: invalid value '2.5': give an integer of at least 1"),
        ("--timeout", "-5", "argument --timeout: invalid value '-5': give a number of seconds greater than 0, or 0 to turn the limit off"),
        ("--timeout", "inf", "argument --timeout: invalid value 'inf': give a number of seconds greater than 0, or 0 to turn the limit off"),
    ],
    ids=["max-side-0", "max-side-word", "max-examples-0", "max-examples-fraction", "timeout-negative", "timeout-inf"],
)
def test_invalid_number_names_option(tmp_path, capsys, option, value, expected):
    path = write_module(tmp_path, "cli_numbers.py", "cli_numbers_linear", "jnp.outer(g, x)")
    with pytest.raises(SystemExit) as info:
        main(["check", str(path), option, value])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert expected in err
    assert "min_side" not in err
    assert "None" not in err


def test_zero_timeout_turns_limit_off():
    assert _parser().parse_args(["check", "rules", "--timeout", "0"]).timeout == 0.0


def test_rule_option_selects_rule(tmp_path, capsys):
    module = tmp_path / "cli_select.py"
    module.write_text(textwrap.dedent(TWO_RULES).replace("cli_ci_", "cli_select_"))
    code, out = run(capsys, str(module), "--rule", "cli_select_double", "--property", "structure", "--max-examples", "3")
    assert code == 0
    assert "cli_select_double" in out
    assert "cli_select_wrong_linear" not in out
    assert "1 passed, 0 failed, 0 errors, 0 not applicable, 1 rule in" in out


def test_unknown_rule_name_exits_two(tmp_path, capsys):
    path = write_module(tmp_path, "cli_unknown.py", "cli_unknown_linear", "jnp.outer(g, x)")
    code, out = run(capsys, str(path), "--rule", "cli_no_such_rule")
    assert code == 2
    assert "No rule named 'cli_no_such_rule' is registered" in out
    assert "'cli_unknown_linear'" in out


def test_missing_output_folder_exits_two(tmp_path, capsys):
    path = write_module(tmp_path, "cli_folder.py", "cli_folder_linear", "jnp.outer(g, x)")
    code, out = run(capsys, str(path), "--json", str(tmp_path / "absent" / "out.json"))
    assert code == 2
    assert "does not exist; create it first" in out
    assert "cli_folder_linear" not in out


def test_list_shows_signatures(tmp_path, capsys):
    path = write_module(tmp_path, "cli_list.py", "cli_list_linear", "jnp.outer(g, x)")
    code = main(["list", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "cli_list_linear(W(h,d), x(d), b(h)) -> (h)" in out
    assert "f32,f64" in out
    assert "1 rule\n" in out


def test_list_reports_declaration_error(tmp_path, capsys):
    path = tmp_path / "cli_list_broken.py"
    path.write_text(
        "import vjpcheck as vc\n\n"
        "@vc.rule('(n)->(n)', specs={'y': vc.real()})\n"
        "def cli_list_broken(x):\n"
        "    return x\n"
    )
    code = main(["list", str(path)])
    out = capsys.readouterr().out
    assert code == 3
    assert "specs name ['y'], which are not arguments" in out


def test_declaration_error_location_in_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cli_located.py"
    path.write_text(
        "import vjpcheck as vc\n\n"
        "@vc.rule('(n)->(n)', specs={'y': vc.real()})\n"
        "def cli_located(x):\n"
        "    return x\n"
    )
    code, out = run(capsys, "cli_located.py", "--json", "out.json", "--junit-xml", "out.xml")
    record = json.loads((tmp_path / "out.json").read_text())["results"][0]
    case = ElementTree.parse(tmp_path / "out.xml").getroot().find("testsuite/testcase")
    assert code == 3
    assert record["property"] == "declaration"
    assert record["location"] == "cli_located.py:3"
    assert record["message"].startswith("cli_located.py:3: ")
    assert case.get("file") == "cli_located.py"
    assert case.get("line") == "3"


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


def test_jax_cache_option_configures_jax(tmp_path, capsys, monkeypatch, restore_jax_cache_config):
    monkeypatch.setenv("VJPCHECK_JAX_CACHE", str(tmp_path / "from-env"))
    code, out = run(capsys, str(tmp_path / "absent.py"), "--jax-cache", str(tmp_path / "cache"))
    assert code == 2
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
    assert not (tmp_path / "from-env").exists()


def test_jax_cache_variable_used(tmp_path, capsys, monkeypatch, restore_jax_cache_config):
    monkeypatch.setenv("VJPCHECK_JAX_CACHE", str(tmp_path / "from-env"))
    run(capsys, str(tmp_path / "absent.py"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "from-env")
    assert (tmp_path / "from-env").is_dir()


def test_folder_searches_subfolders(tmp_path, capsys):
    folder = tmp_path / "cli_tree"
    (folder / "inner").mkdir(parents=True)
    write_module(folder, "top.py", "cli_tree_top", "jnp.outer(g, x)")
    write_module(folder / "inner", "deep.py", "cli_tree_deep", "jnp.outer(g, x)")
    code, out = run(capsys, str(folder), "--max-examples", "3", "--property", "structure")
    assert code == 0
    assert "cli_tree_top" in out
    assert "cli_tree_deep" in out


def test_broken_file_spares_its_folder(tmp_path, capsys):
    folder = tmp_path / "cli_mixed_folder"
    folder.mkdir()
    write_module(folder, "good.py", "cli_mixed_good", "jnp.outer(g, x)")
    (folder / "bad.py").write_text("import vjpcheck_missing_dependency\n")
    code, out = run(capsys, str(folder), "--max-examples", "3", "--property", "structure")
    assert code == 3
    assert "cli_mixed_good" in out
    assert "bad.py [import]" in out
    assert "ModuleNotFoundError: No module named 'vjpcheck_missing_dependency'" in out


def test_dotted_target_found_from_cwd(tmp_path, capsys, monkeypatch):
    package = tmp_path / "cli_cwd_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_module(package, "layer.py", "cli_cwd_linear", "jnp.outer(g, x)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    code, out = run(capsys, "cli_cwd_package.layer", "--max-examples", "3", "--property", "structure")
    assert code == 0
    assert "cli_cwd_linear" in out
