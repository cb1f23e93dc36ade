"""The vjpcheck command: targets, the table, exit codes, and failure reports."""

import re
import textwrap

import pytest

import vjpcheck as vc
from vjpcheck._cli import main

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
    assert "1 passed, 0 failed, 0 errors, 0 not applicable, 1 rules in" in out


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


def test_folder_target_imports_package(tmp_path, capsys):
    package = tmp_path / "cli_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_module(package, "layer.py", "cli_package_linear", "jnp.outer(g, x)")
    code, out = run(capsys, str(package), "--max-examples", "5", "--property", "structure")
    assert code == 0
    assert "cli_package_linear" in out
