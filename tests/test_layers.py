"""`architecture: layers` specs against real PyTorch modules: ResNet-50 (a
torchvision-equivalent module built here), the two examples and ResNet-18,
exact in parameters and forward FLOPs, train activations against
saved_tensors_hooks; and the CLI's contract keys for CNNs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cli import run
from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory
from paramcalc.network import lower as build
from paramcalc.inputs.target import load_spec
from saved_bytes import saved_bytes
from torch_resnet import resnet18, resnet50

EXAMPLES = Path(__file__).parent.parent / "examples"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def flops_of(module, x) -> int:
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


def train_saved(module, x, classes: int) -> int:
    """bf16 on the meta device, with a cross-entropy loss over the last axis."""
    def loss(out):
        targets = torch.zeros(out.shape[:-1], dtype=torch.long, device="meta")
        nn.functional.cross_entropy(out.reshape(-1, classes), targets.reshape(-1))
    return saved_bytes(module, x, loss=loss)


def test_resnet_50_has_torchvisions_25_557_032_parameters():
    with torch.device("meta"):
        reference = resnet50()
    assert sum(p.numel() for p in reference.parameters()) == 25_557_032
    assert count_params("resnet-50").params.total == 25_557_032
    buffers = sum(b.numel() for b in reference.buffers())
    assert count_params("resnet-50").params.buffers == buffers  # running mean, var, num_batches_tracked


def test_resnet_50_forward_is_4_09_gmacs_as_flop_counter_counts_it():
    """torchvision's table: 4.09 GFLOPS (multiply-adds) at 224 x 224; 2 FLOPs per multiply-add here."""
    forward = count_flops("resnet-50").flops.forward
    assert forward == flops_of(resnet50(), torch.randn(1, 3, 224, 224))
    assert forward == 8_178_368_512
    assert round(forward / 2e9, 2) == 4.09


@pytest.mark.parametrize("batch", [1, 3])
def test_resnet_50_train_activations_match_saved_tensors_hooks(batch):
    """Feature maps kept by convs, batch-norm inputs, ReLU outputs (one storage
    with the next conv's input), max-pool indices, the loss: within 1%
    (exact at the time of writing; the contract allows 10%)."""
    with torch.device("meta"):
        model = resnet50().to(torch.bfloat16)
        measured = train_saved(model, torch.zeros(batch, 3, 224, 224, dtype=torch.bfloat16), 1000)
    predicted = estimate_memory("resnet-50", mode="train", batch=batch, dtype="bf16").memory.activations
    assert predicted == pytest.approx(measured, rel=0.01)


def test_resnet_18_from_basic_blocks_matches_its_module(tmp_path):
    spec = tmp_path / "resnet18.yaml"
    spec.write_text("architecture: layers\ninput_shape: [3, 224, 224]\nlayers:\n"
                    "  - {type: conv2d, out_channels: 64, kernel_size: 7, stride: 2, padding: 3, bias: false}\n"
                    "  - {type: batchnorm2d}\n  - {type: relu}\n"
                    "  - {type: maxpool2d, kernel_size: 3, stride: 2, padding: 1}\n"
                    "  - {type: basic, planes: 64, blocks: 2}\n  - {type: basic, planes: 128, blocks: 2, stride: 2}\n"
                    "  - {type: basic, planes: 256, blocks: 2, stride: 2}\n  - {type: basic, planes: 512, blocks: 2, stride: 2}\n"
                    "  - {type: avgpool}\n  - {type: flatten}\n  - {type: linear, out_features: 1000}\n")
    assert count_params(str(spec)).params.total == 11_689_512  # torchvision resnet18
    assert count_flops(str(spec)).flops.forward == flops_of(resnet18(), torch.randn(1, 3, 224, 224))


class SmallCNN(nn.Module):
    """examples/small-cnn.yaml written as plain PyTorch."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                                                  nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, bias=False),
                                                  nn.BatchNorm2d(32)) for _ in range(2))
        self.head = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(block(x) + x)
        return self.head(x)


class LSTMLM(nn.Module):
    """examples/lstm-lm.yaml as pytorch/examples' word_language_model builds it."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(10000, 650)
        self.drop = nn.Dropout(0.5)
        self.rnn = nn.LSTM(650, 650, 2, dropout=0.5, batch_first=True)
        self.decoder = nn.Linear(650, 10000)

    def forward(self, ids):
        return self.decoder(self.drop(self.rnn(self.drop(self.encoder(ids)))[0]))


@pytest.mark.parametrize("example,module,sample,classes", [
    ("small-cnn", SmallCNN, lambda b, dt: torch.zeros(b, 3, 32, 32, dtype=dt), 10),
    ("lstm-lm", LSTMLM, lambda b, dt: torch.zeros(b, 35, dtype=torch.long), 10000),
])
def test_examples_count_flops_and_activations_match_their_torch_modules(example, module, sample, classes):
    path = str(EXAMPLES / f"{example}.yaml")
    with torch.device("meta"):
        reference = module()
    assert count_params(path).params.total == sum(p.numel() for p in reference.parameters())
    with torch.device("meta"):
        assert count_flops(path, batch=2).flops.forward == flops_of(module().to("meta"), sample(2, torch.float32))
        reference = module().to(torch.bfloat16)
        reference.train()
        measured = train_saved(reference, sample(2, torch.bfloat16), classes)
    assert estimate_memory(path, batch=2).memory.activations == pytest.approx(measured, rel=0.01)


def test_a_bare_lstm_takes_seq_len_as_time_steps(tmp_path):
    spec = tmp_path / "lstm.yaml"
    spec.write_text("architecture: layers\ninput_shape: [16, 32]\nloss: none\n"
                    "layers:\n  - {type: lstm, hidden_size: 64}\n")
    per_step = 2 * (32 * 4 * 64 + 64 * 4 * 64)
    assert count_flops(str(spec)).flops.forward == 16 * per_step
    assert count_flops(str(spec), seq_len=100, batch=3).flops.forward == 3 * 100 * per_step
    with torch.device("meta"):
        assert flops_of(nn.LSTM(32, 64, batch_first=True), torch.zeros(3, 100, 32)) == 3 * 100 * per_step


def test_identical_blocks_group_into_one_stage_like_torchvisions_layers():
    stages = {s.name: s.count for s in build(load_spec("resnet-50")).stages}
    assert stages["layer1.0"] == 1 and stages["layer1.1-2"] == 2 and stages["layer3.1-5"] == 5


def test_cli_count_flops_and_memory_for_resnet_50_carry_the_contract_keys():
    count = run("count", "resnet-50", "--json")
    assert count.code == 0, count.err
    assert count.json["params"]["total"] == 25_557_032 and count.json["params"]["embedding"] == 0
    flops = run("flops", "resnet-50", "--json")
    assert flops.json["flops"]["forward"] == 8_178_368_512
    conv1 = 2 * 112 * 112 * 64 * 3 * 7 * 7  # the stem reads pixels: its backward skips the input gradient
    assert flops.json["flops"]["backward"] == 2 * 8_178_368_512 - conv1
    ignored = run("flops", "resnet-50", "--seq-len", "4096", "--json")
    assert ignored.json["flops"]["forward"] == 8_178_368_512
    assert any("asked is ignored" in n for n in ignored.json["notes"])
    memory = run("memory", "resnet-50", "--mode", "train", "--batch", "32", "--json")
    assert memory.code == 0, memory.err
    m = memory.json["memory"]
    assert m["weights"] == 2 * 25_557_032 and m["gradients"] == 2 * 25_557_032
    assert m["optimizer"] == 12 * 25_557_032 and m["kv_cache"] == 0
    assert m["activations"] == estimate_memory("resnet-50", batch=32).memory.activations
    assert m["total_per_gpu"] > m["model_states_per_gpu"] + m["activations"]
    assert run("memory", "resnet-50", "--mode", "infer", "--json").json["memory"]["activations"] > 0
    table = run("count", "resnet-50")
    assert "layer4.1-2" in table.out and "25,557,032" in table.out


HEAD = "architecture: layers\ninput_shape: [3, 8, 8]\nlayers:\n  - {type: conv2d, out_channels: 4, kernel_size: 3}\n"


@pytest.mark.parametrize("line,fragments", [
    ("  - {type: conv2d, out_channels: 4, kernal_size: 3}\n", ("spec.yaml:5:", "layers[1].kernal_size", "did you mean kernel_size")),
    ("  - {type: conv4d, out_channels: 4}\n", ("spec.yaml:5:", "layers[1]", "conv4d")),
    ("  - {type: conv2d, out_channels: 4, kernel_size: 9}\n", ("spec.yaml:5:", "layers[1]", "does not fit")),
    ("  - {type: conv2d, out_channels: 3, kernel_size: 1, groups: 2}\n", ("spec.yaml:5:", "divisible by groups")),
    ("  - {type: flatten}\n  - {type: lstm, hidden_size: 4}\n", ("spec.yaml:4:", "layers[0]", "time axis")),
    ("  - type: residual\n    layers:\n      - {type: conv2d, out_channels: 8, kernel_size: 1}\n",
     ("spec.yaml:5:", "layers[1]", "shortcut")),
    ("  - type: residual\n    layers:\n      - {type: conv2d, out_channels: 4, kernel_size: 1, stride: 0}\n",
     ("spec.yaml:7:", "layers[1].layers[0].stride")),
])
def test_layer_mistakes_name_the_item_and_its_line(tmp_path, line, fragments):
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + line)
    r = run("count", path)
    assert r.code == 2 and "Traceback" not in r.err, r.err
    for fragment in fragments:
        assert fragment in r.err, r.err


def test_repeat_sequential_and_residual_with_a_projection_shortcut(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + "  - type: sequential\n    repeat: 3\n    layers:\n"
                    "      - {type: conv2d, out_channels: 4, kernel_size: 3, padding: same}\n      - {type: gelu}\n"
                    "  - type: residual\n    layers:\n      - {type: conv2d, out_channels: 8, kernel_size: 3, stride: 2, padding: 1}\n"
                    "    shortcut:\n      - {type: conv2d, out_channels: 8, kernel_size: 1, stride: 2}\n"
                    "  - {type: flatten}\n  - {type: linear, out_features: 1e1}\n")
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), *[m for _ in range(3) for m in (nn.Conv2d(4, 4, 3, padding="same"),
                                                                                      nn.GELU())])
    down, shortcut = nn.Conv2d(4, 8, 3, 2, 1), nn.Conv2d(4, 8, 1, 2)
    fc = nn.Linear(8 * 3 * 3, 10)
    expected = sum(p.numel() for m in (reference, down, shortcut, fc) for p in m.parameters())
    assert count_params(str(path)).params.total == expected
    x = torch.randn(1, 3, 8, 8)
    with FlopCounterMode(display=False) as counter:
        y = reference(x)
        fc(torch.relu(down(y) + shortcut(y)).flatten(1))
    assert count_flops(str(path)).flops.forward == counter.get_total_flops()


def test_backward_flops_equal_flop_counter_on_the_reference_resnet():
    model, x = resnet50(), torch.randn(1, 3, 224, 224)
    with torch.backends.mkldnn.flags(enabled=False):
        out = model(x)
        with FlopCounterMode(display=False) as counter:
            out.sum().backward()
    assert count_flops("resnet-50").flops.backward == counter.get_total_flops()
