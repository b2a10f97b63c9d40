"""The program's fast path (cli/fast.py): plain `--json` invocations of `count`
and `flops` run without typer, click or rich, and print exactly what the typer
app prints, bad input (exit 2) included; everything else, bugs included, is
the typer app's. A preset's count comes from its stored network
(paramcalc/presets_store.py), without pydantic or yaml."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli import run, run_process

from paramcalc.catalog import preset_names
from paramcalc.cli.fast import fast_call, run_fast

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "data" / "hf-configs"

FAST = [
    ("count", "llama-3.1-405b", "--json"),
    ("count", "--json", "deepseek-v3"),
    ("count", "mistral-7b", "--json", "--debug"),
    ("count", "llama-3.1-8b", "--lora-rank", "16", "--lora-targets=q_proj,k_proj,v_proj", "--json"),
    ("count", str(CONFIGS / "gpt2.json"), "--json"),
    ("count", "7.5B", "--json"),
    ("flops", "gpt2", "--json"),
    ("flops", "llama-3.1-8b", "--seq-len", "8Ki", "-b", "4", "--attention", "flash", "--json"),
    ("flops", "llama-3.1-8b", "-s", "2048", "--batch=2", "--recompute", "full", "--json"),
]


def fast(*args: str):
    """The fast path in this process: its exit code (None: it handed over), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_fast(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("args", FAST, ids=" ".join)
def test_a_plain_json_invocation_prints_byte_for_byte_what_the_typer_app_prints(args):
    code, out, err = fast(*args)
    full = run(*args)
    assert code == full.code == 0
    assert out == full.out and err == full.err
    assert json.loads(out)["command"] == args[0]


@pytest.mark.parametrize("name", [*preset_names(), "LLAMA-3.1-8B"])
def test_every_presets_count_comes_from_its_stored_network_byte_for_byte_as_the_typer_app_prints_it(name,
                                                                                                    monkeypatch):
    from paramcalc.analysis import count

    full = run("count", name, "--json")

    def lowered(target, **options):
        raise AssertionError(f"{target}: counted through the library, not from its stored network")

    monkeypatch.setattr(count, "count_params", lowered)
    code, out, err = fast("count", name, "--json")
    assert (code, out, err) == (full.code, full.out, full.err) == (0, full.out, "")


def test_a_defaulted_config_warns_the_same_way_on_both_paths(tmp_path):
    partial = tmp_path / "config.json"
    partial.write_text('{"model_type": "llama", "hidden_size": 4096}')
    code, out, err = fast("count", str(partial), "--json")
    full = run("count", str(partial), "--json")
    assert code == full.code == 0 and out == full.out and err == full.err
    assert err.startswith("paramcalc: warning: ") and "intermediate_size" in err
    assert json.loads(out)["notes"][0] == err.splitlines()[0].removeprefix("paramcalc: warning: ")


@pytest.mark.parametrize("args", [
    ("count", "no-such-model", "--json"),
    ("flops", "gpt2", "--batch", "0", "--json"),
    ("flops", "gpt2", "--attention", "sideways", "--json"),
    ("count", "llama-3.1-8b", "--lora-targets", "q_proj", "--json"),
], ids=" ".join)
def test_bad_input_exits_2_with_the_typer_apps_message_without_handing_over(args):
    code, out, err = fast(*args)
    full = run(*args)
    assert code == full.code == 2 and out == full.out == ""
    assert err == full.err and err.startswith("paramcalc: error: ") and err.count("\n") == 1
    whole = run_process(*args)
    assert (whole.code, whole.out, whole.err) == (2, "", err)


def test_bad_input_names_the_flag_the_typer_app_names():
    code, _, err = fast("flops", "gpt2", "-s", "lots", "--json")
    assert code == 2 and err == run("flops", "gpt2", "-s", "lots", "--json").err
    assert err.startswith("paramcalc: error: --seq-len: ")


def test_a_user_error_runs_the_library_call_once(monkeypatch):
    from paramcalc.analysis import count
    from paramcalc.errors import UserError

    calls = []

    def refuse(target, **options):
        calls.append(target)
        raise UserError("no such model", field="revision", fix="give a branch")

    monkeypatch.setattr(count, "count_params", refuse)
    code, out, err = fast("count", "some-org/some-model", "--json")
    assert calls == ["some-org/some-model"]
    assert (code, out, err) == (2, "", "paramcalc: error: --revision: no such model; give a branch\n")


@pytest.mark.parametrize("target, function", [("7.5B", "count_params"), ("gpt2", "count_data")])
def test_a_bug_is_handed_to_the_typer_app_which_reports_it(target, function, monkeypatch):
    from paramcalc.analysis import count

    def broken(*args, **options):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(count, function, broken)
    code, out, err = fast("count", target, "--json")
    assert (code, out, err) == (None, "", "")
    full = run("count", target, "--json")
    assert full.code == 3 and "internal error: ZeroDivisionError: oops" in full.err


def _typer_options(name: str) -> dict[str, tuple[list[str], object]]:
    """The value options of the typer command `name`: keyword -> (flags, default)."""
    import typer

    from paramcalc.cli.app import app

    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]  # the app is a group
    return {p.name: (list(p.opts), p.default) for p in command.params
            if p.param_type_name == "option" and not p.is_flag}


@pytest.mark.parametrize("name", ["count", "flops"])
def test_the_fast_paths_flags_and_defaults_are_the_typer_commands(name):
    from paramcalc.cli.fast import _COMMANDS

    command, typer_options = _COMMANDS[name], _typer_options(name)
    assert set(command.defaults) == set(command.flags.values()) == set(typer_options)
    for keyword, (flags, default) in typer_options.items():
        assert sorted(f for f, k in command.flags.items() if k == keyword) == sorted(flags), keyword
        assert command.defaults[keyword] == default, keyword


@pytest.mark.parametrize("args", [
    (),
    ("count", "gpt2"),  # a table: rich draws it
    ("count", "gpt2", "--help"),
    ("count", "-h", "gpt2", "--json"),
    ("count", "gpt2", "gpt2", "--json"),  # two TARGETs: click's usage error
    ("count", "gpt2", "--json", "--lora-rank"),  # an option without its value
    ("count", "gpt2", "--json", "--lora-rank", "--json"),
    ("count", "gpt2", "--json", "--lora-rank", "8", "--lora-rank", "16"),  # repeated
    ("flops", "gpt2", "-s=1024", "--json"),  # click reads the value "=1024"
    ("flops", "gpt2", "--seq-len", "-5", "--json"),
    ("flops", "gpt2", "--json=yes"),
    ("flops", "gpt2", "--dtype", "bf16", "--json"),  # no such option of flops
    ("memory", "gpt2", "--json"),  # not on the fast path
    ("--version",),
], ids=lambda args: " ".join(args) or "nothing")
def test_anything_else_goes_to_the_typer_app(args):
    assert fast_call(list(args)) is None


def test_the_typer_app_answers_what_the_fast_path_hands_over():
    r = run_process("count", "gpt2", "gpt2", "--json")
    assert r.code == 2 and "Got unexpected extra argument" in r.err
    r = run_process("flops", "gpt2", "-s=1024", "--json")
    assert r.code == 2 and r.err == "paramcalc: error: --seq-len: '=1024' is not a number; write a number such as " \
                                     "7.5B, 405e9, 15T, 8Ki or 0.4\n"


def test_a_presets_json_count_imports_no_pydantic_yaml_typer_click_rich_or_torch():
    code = ("import sys\n"
            "sys.argv = ['paramcalc', 'count', 'llama-3.1-405b', '--json']\n"
            "from paramcalc.cli.fast import main\n"
            "try:\n"
            "    main()\n"
            "except SystemExit as e:\n"
            "    loaded = {m.split('.')[0] for m in sys.modules}\n"
            "    heavy = ('pydantic', 'pydantic_core', 'yaml', 'typer', 'click', 'rich', 'torch', 'transformers',\n"
            "             'huggingface_hub')\n"
            "    print(e.code, sorted(loaded & set(heavy)), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stderr == "0 []\n", proc.stderr
    assert json.loads(proc.stdout)["params"]["total"] == 405_853_388_800


def test_python_dash_m_and_the_console_script_take_the_fast_path():
    main = (ROOT / "paramcalc" / "__main__.py").read_text()
    assert "from paramcalc.cli.fast import main" in main
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'paramcalc = "paramcalc.cli.fast:main"' in pyproject
