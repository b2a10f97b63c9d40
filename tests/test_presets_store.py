"""The stored, pre-lowered presets (paramcalc/presets_store.py): every stored
network is current and equals lowering its preset; a stale, broken or
missing one is never used; and the count's plain data (what the fast path
prints) is exactly the typed report's JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramcalc import presets_store
from paramcalc.analysis.count import count_data, count_params
from paramcalc.catalog import preset_names, preset_path, presets_root
from paramcalc.network import lower
from paramcalc.results.count import CountReport

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "stale: regenerate the stored presets with `python -m paramcalc.presets_store`"


@pytest.mark.parametrize("name", preset_names())
def test_every_stored_preset_is_current_and_equals_its_lowered_preset(name):
    stored = presets_store.load(name)
    assert stored is not None, f"{presets_store.stored_path(name)} is missing or {REGENERATE}"
    net = lower(name)
    assert stored == net, f"{name}: the stored network differs from lower({name!r}); {REGENERATE}"
    assert stored.params() == net.params(), REGENERATE


def test_only_presets_have_stored_networks():
    stored = sorted(path.stem for path in (presets_root() / "lowered").glob("*.pickle"))
    assert stored == preset_names(), REGENERATE


def test_the_fingerprint_covers_every_module_lowering_a_preset_imports():
    code = ("import sys\n"
            "from paramcalc.catalog import preset_names\n"
            "from paramcalc.network import lower\n"
            "for name in preset_names():\n"
            "    lower(name)\n"
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('paramcalc') and "
            "getattr(m, '__file__', None)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    package = ROOT / "paramcalc"
    imported = {Path(f).resolve() for f in proc.stdout.split()}
    ours = {f for f in imported if f.is_relative_to(package)}
    assert len(ours) > 20
    missing = sorted(str(f.relative_to(package)) for f in ours - {p.resolve() for p in presets_store.sources()})
    assert not missing, f"lowering reads these, add them to presets_store.SOURCES: {missing}"


def test_a_changed_preset_or_source_file_changes_the_fingerprint(tmp_path, monkeypatch):
    import shutil

    import paramcalc

    preset = preset_path("gpt2")
    assert preset is not None
    same = presets_store.fingerprint(preset)
    copy = tmp_path / "gpt2.yaml"
    copy.write_bytes(preset.read_bytes())
    assert presets_store.fingerprint(copy) == same
    copy.write_bytes(preset.read_bytes() + b"# a comment\n")
    assert presets_store.fingerprint(copy) != same
    package = Path(paramcalc.__file__).parent
    tree = tmp_path / "paramcalc"
    for source in presets_store.sources():
        (tree / source.relative_to(package)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tree / source.relative_to(package))
    monkeypatch.setattr(paramcalc, "__file__", str(tree / "__init__.py"))
    assert presets_store.fingerprint(preset) == same
    with (tree / "blocks" / "mlp.py").open("a") as f:
        f.write("# an edit\n")
    assert presets_store.fingerprint(preset) != same


@pytest.mark.parametrize("content", [
    b"",  # empty
    b"paramcalc-lowered-1 0123abcd\n",  # another fingerprint: stale
    b"paramcalc-lowered-0 %s\nnot a pickle",  # another layout
    b"paramcalc-lowered-1 %s\nnot a pickle",  # the right fingerprint, a broken body
], ids=["empty", "stale", "other-layout", "broken"])
def test_a_stale_or_broken_stored_preset_is_not_used_and_the_count_is_still_right(content, tmp_path, monkeypatch):
    preset = preset_path("gpt2")
    assert preset is not None
    if b"%s" in content:
        content = content.replace(b"%s", presets_store.fingerprint(preset).encode())
    stored = tmp_path / "gpt2.pickle"
    stored.write_bytes(content)
    monkeypatch.setattr(presets_store, "stored_path", lambda name: stored)
    assert presets_store.load("gpt2") is None
    from cli import run
    from test_fast_path import fast

    code, out, err = fast("count", "gpt2", "--json")
    assert code == 0 and (out, err) == (run("count", "gpt2", "--json").out, "")


def test_a_missing_stored_preset_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(presets_store, "stored_path", lambda name: tmp_path / "nothing.pickle")
    assert presets_store.load("gpt2") is None


def test_a_file_or_folder_named_like_a_preset_is_read_as_what_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert presets_store.load("gpt2") is not None
    (tmp_path / "gpt2").mkdir()
    assert presets_store.load("gpt2") is None
    assert presets_store.load("no-such-preset") is None
    assert presets_store.load("../gpt2") is None


def test_a_stored_presets_lowering_caveats_are_said_again_as_the_typer_app_says_them(tmp_path, monkeypatch):
    import pickle

    from paramcalc.errors import collect_warnings

    preset = preset_path("gpt2")
    assert preset is not None
    stored = tmp_path / "gpt2.pickle"
    stored.write_bytes(b"paramcalc-lowered-1 " + presets_store.fingerprint(preset).encode() + b"\n"
                       + pickle.dumps((lower("gpt2"), ("a caveat",))))
    monkeypatch.setattr(presets_store, "stored_path", lambda name: stored)
    with collect_warnings() as said:
        assert presets_store.load("gpt2") == lower("gpt2")
    assert said == ["a caveat"]
    from test_fast_path import fast

    code, out, err = fast("count", "gpt2", "--json")  # as emit() says a caveat: stderr, then first of the notes
    report = count_params("gpt2")
    assert (code, err) == (0, "paramcalc: warning: a caveat\n")
    assert out == report.model_copy(update={"notes": ["a caveat", *report.notes]}).json_text()


def _measured():
    from paramcalc.network.measured import MeasuredCount
    from paramcalc.network.profiled import Part

    return MeasuredCount("some/model", count=1_000, embedding=300, buffer_count=7, note="counted on meta",
                         parts=(Part("embed", "Embedding", 300, 300), Part("body", "Body", 700, 0)))


@pytest.mark.parametrize("model", [*preset_names(), "7.5B", "measured", "lora"])
def test_the_counts_plain_data_is_its_reports_json_key_for_key(model):
    if model == "measured":
        net = _measured()
    elif model == "lora":
        from paramcalc.analysis.settings import with_lora_flags

        net = with_lora_flags(lower("llama-3.1-8b"), 16, "q_proj,v_proj")
    else:
        net = lower(model)
    data = count_data(net)
    report = CountReport.model_validate(data)
    assert report.model_dump(mode="json") == data
    assert json.dumps(report.model_dump(mode="json")) == json.dumps(data)  # the same key order, nested too
    assert report.json_text() == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if isinstance(model, str) and model not in ("measured", "lora"):
        assert count_params(model) == report
