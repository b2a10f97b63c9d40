"""`paramcalc.profile(module, example_inputs)`: a live torch module becomes a
network every analysis takes. Its count is the module's own sum of numel
(a tied parameter once, a frozen part apart), its FLOPs are FlopCounterMode's
over the same forward and backward, its saved bytes the project's own
measurement (tests/saved_bytes.py)."""

from __future__ import annotations

import pytest
from saved_bytes import saved_bytes

import paramcalc
from paramcalc.errors import UserError

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

V, h, B, S = 40, 12, 2, 8


class Tied(nn.Module):
    """An embedding tied to the output head, a trainable MLP, a frozen linear."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, h)
        self.mlp = nn.Sequential(nn.Linear(h, 3 * h), nn.ReLU(), nn.Linear(3 * h, h))
        self.frozen = nn.Linear(h, h)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(h, V, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, input_ids):
        x = self.embed(input_ids)
        x = x + self.mlp(x)
        return self.head(self.frozen(x))


# the table (tied head once); the MLP's two biased linears; the frozen linear
TABLE, MLP, FROZEN = V * h, (h * 3 * h + 3 * h) + (3 * h * h + h), h * h + h


def ids(batch=B, seq=S, device="cpu"):
    return torch.randint(0, V, (batch, seq), device=device)


def counted(module, inputs, loss=None):
    """FlopCounterMode over one forward (with the loss) and one backward, measured independently."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fwd:
        out = module(inputs)
        scalar = out.sum() if loss is None else loss(out)
    with FlopCounterMode(display=False) as bwd:
        scalar.backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Tied()


def test_the_count_is_the_modules_own_sum_with_the_tied_table_once_and_the_frozen_part_apart(model):
    p = paramcalc.count_params(paramcalc.profile(model, ids())).params
    assert p.total == sum(t.numel() for t in model.parameters()) == TABLE + MLP + FROZEN
    assert p.trainable == sum(t.numel() for t in model.parameters() if t.requires_grad) == TABLE + MLP
    assert (p.frozen, p.embedding, p.non_embedding) == (FROZEN, TABLE, MLP + FROZEN)


def test_the_breakdown_is_by_top_level_module_and_a_shared_parameter_counts_in_the_first(model):
    rows = paramcalc.count_params(paramcalc.profile(model, ids())).breakdown
    assert [(r.stage, r.component, r.total) for r in rows] == [
        ("embed", "Embedding", TABLE), ("mlp", "Sequential", MLP), ("frozen", "Linear", FROZEN)]


def test_forward_and_backward_flops_equal_flop_counter_modes_totals(model):
    x = ids()
    net = paramcalc.profile(model, x)
    forward, backward = counted(model, x)
    f = paramcalc.flops(net, batch=B).flops
    assert (f.forward, f.backward, f.train_step) == (forward, backward, forward + backward)
    # the frozen linear gets no weight gradient and the table's lookup no matmul: less than 2 x forward
    assert f.forward == 2 * B * S * (h * 3 * h + 3 * h * h + h * h + h * V)
    assert f.backward < 2 * f.forward


def test_a_loss_function_and_keyword_inputs_are_what_is_measured(model):
    x = ids()
    target = ids()

    def loss(logits):
        return F.cross_entropy(logits.reshape(-1, V), target.reshape(-1))

    net = paramcalc.profile(model, {"input_ids": x}, loss=loss)
    forward, backward = counted(model, x, loss)
    f = paramcalc.flops(net, batch=B).flops
    assert (f.forward, f.backward) == (forward, backward)
    m = paramcalc.memory(net, batch=B, dtype="fp32", precision="fp32").memory
    assert m.activations == saved_bytes(model, input_ids=x, loss=loss)


def test_saved_bytes_equal_the_projects_own_measurement(model):
    x = ids()
    net = paramcalc.profile(model, x)
    expected = saved_bytes(model, x, loss=lambda out: out.sum())
    m = paramcalc.memory(net, batch=B, dtype="fp32", precision="fp32").memory
    assert m.activations == expected > 0
    # at bf16 the fp32 storages halve; the int64 token ids the embedding saves stay 8 bytes each
    half = paramcalc.memory(net, batch=B, dtype="bf16").memory.activations
    assert half == (expected - 8 * B * S) // 2 + 8 * B * S


def test_weights_gradients_and_optimizer_state_follow_the_trainable_parameters(model):
    net = paramcalc.profile(model, ids())
    m = paramcalc.memory(net, batch=B).memory  # bf16 mixed precision, AdamW
    total, trainable = TABLE + MLP + FROZEN, TABLE + MLP
    assert (m.weights, m.gradients, m.optimizer) == (2 * total, 2 * trainable, 12 * trainable)


def test_other_batches_scale_linearly_and_the_example_fixes_the_sequence(model):
    net = paramcalc.profile(model, ids())
    at_example = paramcalc.flops(net, batch=B)
    doubled = paramcalc.flops(net, batch=2 * B, seq_len=999)
    assert doubled.flops.forward == 2 * at_example.flops.forward
    assert doubled.seq_len == S and any("ignored" in n for n in doubled.notes)


def test_cost_and_estimate_take_the_measured_training_flops(model):
    net = paramcalc.profile(model, ids())
    f = paramcalc.flops(net, batch=1).flops
    c = paramcalc.cost(net, tokens=S * 1000, gpu="h100-sxm")
    assert c.cost.training_flops == f.train_step * 1000
    e = paramcalc.estimate(net, tokens="1e9", gpus=1)
    assert e.params.total == TABLE + MLP + FROZEN


def test_a_module_on_the_meta_device_is_profiled_without_memory():
    with torch.device("meta"):
        model = Tied()
    x = ids(device="meta")
    net = paramcalc.profile(model, x)
    forward, backward = counted(model, x)
    f = paramcalc.flops(net, batch=B).flops
    assert (net.total_params, f.forward, f.backward) == (TABLE + MLP + FROZEN, forward, backward)
    assert paramcalc.memory(net, batch=B, dtype="fp32", precision="fp32").memory.activations == \
        saved_bytes(model, x, loss=lambda out: out.sum())


def test_profiling_leaves_the_modules_gradients_alone(model):
    paramcalc.profile(model, ids())
    assert all(p.grad is None for p in model.parameters())


def test_a_tuple_of_positional_inputs_with_a_float_tensor_is_one_sample_each():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(4, 6)
    net = paramcalc.profile(mlp, (x,))
    r = paramcalc.flops(net, batch=4)
    forward, backward = counted(mlp, x)
    assert (r.seq_len, r.flops.forward, r.flops.backward) == (1, forward, backward)


def test_what_is_not_a_module_is_refused():
    with pytest.raises(UserError, match="torch.nn.Module, not a dict"):
        paramcalc.profile({}, ids())


def test_a_forward_that_reads_values_on_meta_is_a_user_error_naming_meta():
    class ReadsValues(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x)[: int(x.sum().item())]

    with torch.device("meta"):
        model = ReadsValues()
    with pytest.raises(UserError, match="did not run on the meta device"):
        paramcalc.profile(model, torch.zeros(2, 4, device="meta"))
