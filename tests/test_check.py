"""`paramcalc check BUDGET.yaml`: CI budgets through the real command line
(docs/contract.md, "Budget files for `check`" and the exit codes)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from cli import assert_user_error, run

EXAMPLES = Path(__file__).parent.parent / "examples"
LLAMA_8B = 8_030_261_248  # llama-3.1-8b, pinned by test_presets
GPT2 = 124_439_808

TWO_BUDGETS = """\
budgets:
  - name: eight-b
    model: llama-3.1-8b
    max_params: 9e9
  - name: too-tight
    model: llama-3.1-8b
    max_params: 8e9
    train: {tokens: 15e12, gpu: h100-sxm, mfu: 0.4, seq_len: 8192}
    max_gpu_hours: 1e5
    max_usd: 2.5e6
"""


def write(tmp_path: Path, text: str, name: str = "budget.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def budget(**fields) -> str:
    return yaml.safe_dump({"budgets": [{"name": "b", "model": "gpt2", **fields}]}, sort_keys=False)


def limits(doc: dict, i: int = 0) -> dict:
    return {x["limit"]: x for x in doc["results"][i]["limits"]}


# ---------------------------------------------------------------- pass, fail and exit codes


def test_a_budget_that_holds_exits_0_with_the_exact_count(tmp_path):
    r = run("check", write(tmp_path, budget(model="llama-3.1-8b", max_params="9e9")), "--format", "json")
    assert r.code == 0, r.err
    doc = r.json
    assert doc["schema_version"] == 1 and doc["command"] == "check" and doc["passed"] is True
    assert limits(doc)["max_params"] == {"limit": "max_params", "unit": "params", "max": 9_000_000_000,
                                         "actual": LLAMA_8B, "passed": True}


def test_an_exceeded_budget_exits_1_and_names_the_failing_budget(tmp_path):
    r = run("check", write(tmp_path, TWO_BUDGETS), "--format", "json")
    assert r.code == 1, r.err
    doc = r.json
    assert doc["passed"] is False
    assert [(x["name"], x["passed"]) for x in doc["results"]] == [("eight-b", True), ("too-tight", False)]
    failed = limits(doc, 1)
    assert failed["max_params"]["passed"] is False and failed["max_params"]["max"] == 8_000_000_000
    assert failed["max_gpu_hours"]["passed"] is False
    assert failed["max_usd"]["passed"] is True


def test_9e9_which_pyyaml_reads_as_a_string_is_a_number(tmp_path):
    path = write(tmp_path, "budgets:\n  - {name: b, model: llama-3.1-8b, max_params: 9e9}\n")
    assert yaml.safe_load(path.read_text())["budgets"][0]["max_params"] == "9e9"  # YAML 1.1 wants a dot
    doc = run("check", path, "--format", "json").json
    assert limits(doc)["max_params"]["max"] == 9_000_000_000
    assert isinstance(limits(doc)["max_params"]["max"], int)


def test_a_limit_equal_to_the_actual_value_holds(tmp_path):
    ok = run("check", write(tmp_path, budget(max_params=GPT2)), "--format", "json")
    over = run("check", write(tmp_path, budget(max_params=GPT2 - 1), "over.yaml"), "--format", "json")
    assert (ok.code, over.code) == (0, 1)


def test_a_bare_count_checks_its_parameters(tmp_path):
    r = run("check", write(tmp_path, budget(model="7.5B", max_params="8B")), "--format", "json")
    assert r.code == 0 and limits(r.json)["max_params"]["actual"] == 7_500_000_000


# ---------------------------------------------------------------- relative paths


TINY = ("vocab_size: 1000\nhidden_size: 64\nintermediate_size: 128\nnum_hidden_layers: 2\n"
        "num_attention_heads: 4\nnum_key_value_heads: 2\n")
# embed 64000 + head 64000 + 2 x (q 4096 + k,v 2 x 2048 + o 4096 + mlp 3 x 8192 + norms 128) + final norm 64
TINY_PARAMS = 64000 * 2 + 2 * (4096 * 2 + 2048 * 2 + 3 * 8192 + 128) + 64


def test_model_paths_resolve_against_the_budget_files_folder_not_the_cwd(tmp_path):
    write(tmp_path, TINY, "models/tiny.yaml")
    path = write(tmp_path, budget(model="../models/tiny.yaml", max_params=TINY_PARAMS), "ci/budget.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run("check", path, "--format", "json", cwd=elsewhere)
    assert r.code == 0, r.err
    assert limits(r.json)["max_params"]["actual"] == TINY_PARAMS


def test_a_spec_next_to_the_budget_file_is_found_from_a_relative_budget_path(tmp_path):
    write(tmp_path, TINY, "ci/tiny.yaml")
    write(tmp_path, budget(model="tiny.yaml", max_params=TINY_PARAMS - 1), "ci/budget.yaml")
    r = run("check", "ci/budget.yaml", "--format", "json", cwd=tmp_path)
    assert r.code == 1, r.err
    assert limits(r.json)["max_params"]["actual"] == TINY_PARAMS


# ---------------------------------------------------------------- the figures match the other commands


def test_training_limits_use_the_cost_commands_figures(tmp_path):
    train = {"tokens": "10B", "gpu": "h100-sxm", "gpus": 8, "mfu": 0.5, "seq_len": 1024}
    path = write(tmp_path, budget(train=train, max_training_flops="1e30", max_gpu_hours="1e9",
                                  max_wall_clock_hours="1e9", max_usd="1e12"))
    got = limits(run("check", path, "--format", "json").json)
    cost = run("cost", "gpt2", "--tokens", "10B", "--gpu", "h100-sxm", "--gpus", "8", "--mfu", "0.5",
               "--seq-len", "1024", "--json").json["cost"]
    assert got["max_training_flops"]["actual"] == cost["training_flops"]
    assert got["max_gpu_hours"]["actual"] == pytest.approx(cost["gpu_hours"])
    assert got["max_wall_clock_hours"]["actual"] == pytest.approx(cost["gpu_hours"] / 8)
    assert got["max_usd"]["actual"] == pytest.approx(cost["usd"])


def test_memory_limits_take_units_and_use_the_memory_commands_figure(tmp_path):
    path = write(tmp_path, budget(memory={"seq_len": 512, "batch": 2, "zero": 1, "dp": 4, "attention": "flash"},
                                  max_memory_per_gpu="1.5GiB"))
    r = run("check", path, "--format", "json")
    got = limits(r.json)["max_memory_per_gpu"]
    expected = run("memory", "gpt2", "--seq-len", "512", "--batch", "2", "--zero", "1", "--dp", "4",
                   "--attention", "flash", "--json").json["memory"]["total_per_gpu"]
    assert got["actual"] == expected
    assert got["max"] == 3 * 2**29  # 1.5 GiB
    assert r.code == (0 if expected <= 3 * 2**29 else 1)


def test_memory_uses_the_training_runs_sequence_length_unless_given(tmp_path):
    train = {"tokens": "1B", "gpu": "h100-sxm", "seq_len": 256}
    path = write(tmp_path, budget(train=train, max_gpu_hours=1e6, max_memory_per_gpu="80GB"))
    got = limits(run("check", path, "--format", "json").json)["max_memory_per_gpu"]
    assert got["max"] == 80 * 10**9
    assert got["actual"] == run("memory", "gpt2", "--seq-len", "256", "--json").json["memory"]["total_per_gpu"]


@pytest.mark.parametrize("text,value", [("80GiB", 80 * 2**30), ("80GB", 80 * 10**9), ("80 gib", 80 * 2**30),
                                        ("512MiB", 2**29), ("1TB", 10**12), ("2TiB", 2 * 2**40),
                                        ("8.5e10", 85 * 10**9), ("80G", 80 * 10**9), (1024, 1024)])
def test_byte_limits_read_binary_and_decimal_units(text, value):
    from paramcalc.units import parse_bytes

    assert parse_bytes(text) == value


# ---------------------------------------------------------------- output formats


def test_junit_has_one_testcase_per_budget_and_one_failure_naming_every_exceeded_limit(tmp_path):
    r = run("check", write(tmp_path, TWO_BUDGETS), "--format", "junit")
    assert r.code == 1, r.err
    suite = ET.fromstring(r.out)
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["eight-b", "too-tight"]
    assert cases["eight-b"].findall("failure") == []
    failures = cases["too-tight"].findall("failure")
    assert len(failures) == 1
    text = failures[0].get("message") + "\n" + failures[0].text
    for fragment in ("max_params", "8,030,261,248", "8,000,000,000", "max_gpu_hours", "100,000"):
        assert fragment in text, text
    assert "max_usd" not in failures[0].text  # it holds: only exceeded limits are named


def test_junit_of_a_passing_file_has_no_failure(tmp_path):
    r = run("check", write(tmp_path, budget(max_params="1B")), "--format", "junit")
    assert r.code == 0
    suite = ET.fromstring(r.out)
    assert suite.get("failures") == "0" and list(suite.iter("failure")) == []


def test_markdown_is_a_table_for_a_pr_comment(tmp_path):
    r = run("check", write(tmp_path, TWO_BUDGETS), "--format", "markdown")
    assert r.code == 1
    lines = r.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| budget |"))
    assert set(lines[header + 1].replace("|", "").split()) <= {"---", "---:"}
    rows = [line for line in lines[header + 2:] if line.startswith("|")]
    assert len(rows) == 4  # one per limit: 1 + 3
    assert sum("FAIL" in row for row in rows) == 2
    assert "1 of 2 budgets exceeded" in lines[0]


def test_table_shows_pass_and_fail_per_limit(tmp_path):
    r = run("check", write(tmp_path, TWO_BUDGETS))
    assert r.code == 1
    assert r.out.count("PASS") == 2 and r.out.count("FAIL") == 2
    assert "eight-b" in r.out and "too-tight" in r.out and "max_gpu_hours" in r.out


def test_the_example_budget_file_holds():
    r = run("check", EXAMPLES / "budget.yaml", "--format", "json")
    assert r.code == 0, r.out + r.err
    assert len(r.json["results"]) >= 3


# ---------------------------------------------------------------- bad budget files exit 2


def test_a_file_without_budgets(tmp_path):
    assert_user_error(run("check", write(tmp_path, "limits: []\n")), "budget.yaml:1:1", "limits", "unknown key")
    assert_user_error(run("check", write(tmp_path, "{}\n")), "budget.yaml:1:1", "budgets", "missing")
    assert_user_error(run("check", write(tmp_path, "budgets: []\n")), "budgets", "is empty")
    assert_user_error(run("check", write(tmp_path, "")), "budget.yaml", "empty")


def test_an_unknown_limit_names_its_line_and_the_closest_key(tmp_path):
    path = write(tmp_path, "budgets:\n  - name: b\n    model: gpt2\n    max_parms: 9e9\n")
    assert_user_error(run("check", path), "budget.yaml:4:5", "max_parms", "did you mean max_params")


def test_yaml_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"budgets:\n  - name: b\n    model: gpt2\n"
                           f"    max_params: !!python/object/apply:os.system ['touch {marker}']\n")
    assert_user_error(run("check", path), "budget.yaml:4:", "tag")
    assert not marker.exists()


def test_a_training_limit_without_a_training_run(tmp_path):
    path = write(tmp_path, "budgets:\n  - name: b\n    model: gpt2\n    max_params: 1B\n    max_gpu_hours: 10\n")
    assert_user_error(run("check", path), "budget.yaml:5:5", "max_gpu_hours", "train:")


@pytest.mark.parametrize("fields,fragments", [
    ({"max_params": "lots"}, ["max_params", "'lots' is not a number"]),
    ({"max_params": -5}, ["max_params", "positive"]),
    ({"max_memory_per_gpu": "80 GiBs"}, ["max_memory_per_gpu", "not a byte size"]),
    ({"train": {"tokens": "1B", "gpu": "h100-sxm", "mfu": 40}, "max_gpu_hours": 1}, ["train.mfu", "0.4 for 40%"]),
    ({"train": {"tokens": "1B", "gpu": "h1000"}, "max_gpu_hours": 1}, ["train.gpu", "did you mean"]),
    ({"train": {"tokens": "1B", "gpu": "h100-sxm", "seq_len": 4096}, "max_gpu_hours": 1}, ["train.seq_len", "1024"]),
    ({"memory": {"mode": "serve"}, "max_memory_per_gpu": "80GB"}, ["memory.mode", "train, infer"]),
    ({"memory": {"tokens": 5}, "max_memory_per_gpu": "80GB"}, ["memory.tokens", "unknown key"]),
    ({"model": "llama-3.1-8c", "max_params": 1}, ["budgets[0].model", "did you mean llama-3.1-8b"]),
    ({"model": "missing.yaml", "max_params": 1}, ["budgets[0].model", "no such file"]),
    ({"model": "7B", "max_memory_per_gpu": "80GB"}, ["max_memory_per_gpu", "bare parameter count"]),
    ({}, ["sets no limit"]),
])
def test_bad_budgets_name_the_field(tmp_path, fields, fragments):
    assert_user_error(run("check", write(tmp_path, budget(**fields))), "budget.yaml:", *fragments)


def test_duplicate_budget_names(tmp_path):
    path = write(tmp_path, "budgets:\n  - {name: b, model: gpt2, max_params: 1B}\n"
                           "  - {name: b, model: gpt2, max_params: 2B}\n")
    assert_user_error(run("check", path), "budget.yaml:3:", "second budget named 'b'")


def test_dollars_without_a_known_price(tmp_path):
    gpu = (Path(__file__).parent.parent / "presets/gpus/l4.yaml").read_text()
    write(tmp_path, gpu.replace("name: l4", "name: my-card").replace("aliases:", "# aliases:"), "hw/card.yaml")
    train = {"tokens": "1B", "gpu": "hw/card.yaml"}
    assert_user_error(run("check", write(tmp_path, budget(train=train, max_usd=100))), "max_usd", "usd_per_hour")
    ok = run("check", write(tmp_path, budget(train={**train, "usd_per_hour": 1.5}, max_usd=1e6), "ok.yaml"),
             "--format", "json")
    assert ok.code == 0, ok.err


def test_an_unknown_format(tmp_path):
    assert_user_error(run("check", write(tmp_path, budget(max_params="1B")), "--format", "xml"), "--format")


def test_a_missing_budget_file(tmp_path):
    assert_user_error(run("check", tmp_path / "nope.yaml"), "nope.yaml", "no such file")
