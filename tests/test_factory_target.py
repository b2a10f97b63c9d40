"""A TARGET `package.module:factory` builds the user's own PyTorch module on
the meta device from a file in the current directory: its count is the
module's sum of numel, its FLOPs FlopCounterMode's at the batch and sequence
asked, and every mistake in it exits 2 with one line, never a traceback."""

from __future__ import annotations

import itertools
import sys
import textwrap

import pytest
from cli import assert_user_error, run

torch = pytest.importorskip("torch")

MODEL = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, vocab=50, width=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.norm.requires_grad_(False)

    def forward(self, input_ids):
        return self.head(self.norm(self.mlp(self.embed(input_ids))))


def build():
    return Tiny()
"""
PARAMS = 50 * 16 + (16 * 64 + 64 + 64 * 16 + 16) + 2 * 16  # table (tied head once), MLP, frozen norm
_names = itertools.count()


@pytest.fixture
def user(tmp_path, monkeypatch):
    """Write a module into a fresh current directory; returns a function that writes one and gives its name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the factory TARGET puts the current directory on it

    def write(source: str) -> str:
        name = f"user_model_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


def built(name: str, attr: str = "build"):
    module = sys.modules[name]
    with torch.device("meta"):
        return getattr(module, attr)()


def test_the_count_is_the_built_modules_own_sum(user):
    name = user(MODEL)
    r = run("count", f"{name}:build", "--json")
    assert r.code == 0, r.err
    p = r.json["params"]
    model = built(name)
    assert p["total"] == sum(t.numel() for t in model.parameters()) == PARAMS
    assert (p["trainable"], p["frozen"]) == (PARAMS - 32, 32)
    assert [row["stage"] for row in r.json["breakdown"]] == ["embed", "mlp", "norm"]
    assert any("your code" in n for n in r.json["notes"])


def test_flops_are_flop_counter_modes_over_input_ids_of_the_batch_and_sequence_asked(user):
    from torch.utils.flop_counter import FlopCounterMode

    name = user(MODEL)
    r = run("flops", f"{name}:build", "--batch", "3", "--seq-len", "7", "--json")
    assert r.code == 0, r.err
    model = built(name)
    with FlopCounterMode(display=False) as fwd:
        out = model(torch.zeros(3, 7, dtype=torch.long, device="meta")).sum()
    with FlopCounterMode(display=False) as bwd:
        out.backward()
    f = r.json["flops"]
    assert (f["forward"], f["backward"]) == (fwd.get_total_flops(), bwd.get_total_flops())
    assert f["forward"] == 2 * 3 * 7 * (16 * 64 + 64 * 16 + 16 * 50)


def test_memory_and_cost_run_on_the_factory_target(user):
    name = user(MODEL)
    m = run("memory", f"{name}:build", "--seq-len", "16", "--json")
    assert m.code == 0, m.err
    assert m.json["memory"]["activations"] > 0
    c = run("cost", f"{name}:build", "--tokens", "1e9", "--gpu", "h100-sxm", "--seq-len", "16", "--json")
    assert c.code == 0, c.err
    assert c.json["cost"]["training_flops"] > 0


def test_example_inputs_fix_what_is_measured(user):
    name = user("""
        import torch
        from torch import nn

        def build():
            return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))

        def example_inputs():
            return (torch.randn(4, 6),)
    """)
    r = run("flops", f"{name}:build", "--batch", "4", "--json")
    assert r.code == 0, r.err
    assert r.json["flops"]["forward"] == 2 * 4 * (6 * 5 + 5 * 3)
    assert r.json["seq_len"] == 1


def test_a_forward_without_known_inputs_counts_parameters_and_leaves_flops_null(user):
    name = user("""
        from torch import nn

        class TwoInputs(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(4, 4)

            def forward(self, a, b):
                return self.linear(a + b)
    """)
    assert run("count", f"{name}:TwoInputs", "--json").json["params"]["total"] == 20
    r = run("flops", f"{name}:TwoInputs", "--json")
    assert r.code == 0, r.err
    assert r.json["flops"]["forward"] is None
    assert any("FLOPs unknown" in n and "example_inputs()" in n for n in r.json["notes"])


def test_the_help_says_the_target_runs_your_code():
    r = run("count", "--help")
    assert "IMPORTS AND RUNS YOUR CODE" in " ".join(r.out.replace("│", " ").split())


def test_a_budget_checks_a_factory_target(user, tmp_path):
    name = user(MODEL)
    budget = tmp_path / "budget.yaml"
    budget.write_text(f"budgets:\n  - name: tiny\n    model: '{name}:build'\n    max_params: {PARAMS}\n")
    r = run("check", budget, "--json")
    assert r.code == 0, r.out + r.err


# ---------------------------------------------------------------- bad input: exit 2, one line, no traceback


def test_a_module_that_does_not_exist(user):
    assert_user_error(run("count", "no_such_module_here:build"), "no module named 'no_such_module_here'",
                      "current directory")


def test_a_missing_attribute_lists_what_the_module_defines(user):
    name = user(MODEL)
    assert_user_error(run("count", f"{name}:buld"), f"module {name!r} has no attribute 'buld'", "Tiny, build")


def test_a_factory_that_raises_shows_its_one_line_message(user):
    name = user("""
        def build():
            raise ValueError("width must be even\\nsecond line")
    """)
    r = run("count", f"{name}:build")
    assert_user_error(r, f"{name}:build() raised ValueError: width must be even")
    assert "second line" not in r.err


def test_a_factory_that_returns_no_module(user):
    name = user("""
        def build():
            return {"not": "a module"}
    """)
    assert_user_error(run("count", f"{name}:build"), "returned a dict, not a torch.nn.Module")


def test_a_module_file_that_fails_to_import(user):
    name = user("import not_installed_anywhere\n")
    assert_user_error(run("count", f"{name}:build"), f"importing {name!r} failed",
                      "No module named 'not_installed_anywhere'")


def test_a_forward_that_cannot_run_on_meta(user):
    name = user("""
        from torch import nn

        class ReadsValues(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(10, 4)

            def forward(self, input_ids):
                return self.embed(input_ids)[: int(input_ids.max().item())]
    """)
    assert run("count", f"{name}:ReadsValues").code == 0  # counting never runs the forward
    assert_user_error(run("flops", f"{name}:ReadsValues", "--seq-len", "4"), "ReadsValues's forward did not run "
                      "on the meta device", "build the module on CPU")


def test_without_torch_the_message_names_the_extra(user, monkeypatch):
    name = user(MODEL)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert_user_error(run("count", f"{name}:build"), "torch is not installed", "pip install 'paramcalc[torch]'")
