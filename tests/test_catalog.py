"""The hardware catalog: every entry loads with a source and dense peaks, the
contract's names and common aliases resolve, and headline figures are pinned
to the vendors' datasheets (dense = the sparse headline / 2)."""

from __future__ import annotations

import pytest

from cli import run
from paramcalc.catalog import gpu_names, load_gpu, prices

T = 10**12


@pytest.mark.parametrize("name", gpu_names())
def test_every_accelerator_has_a_source_memory_bandwidth_and_a_bf16_peak(name):
    gpu = load_gpu(name)
    assert gpu.source and gpu.memory_bytes > 0 and gpu.memory_bandwidth > 0
    assert gpu.peak("bf16") > 0


@pytest.mark.parametrize("name,bf16,fp8,memory_gib", [
    ("h100-sxm", 989.4 * T, 1978.9 * T, 80),  # NVIDIA H100 datasheet: 1,979 / 3,958 TFLOPS with sparsity
    ("a100-80gb", 312 * T, None, 80),  # NVIDIA A100 datasheet: 312 TFLOPS bf16 dense (624 sparse)
    ("h200", 989.4 * T, 1978.9 * T, 141),  # NVIDIA H200: H100's compute, 141 GB HBM3e
    ("mi300x", 1307.4 * T, 2614.9 * T, 192),  # AMD Instinct MI300X datasheet (dense)
    ("b200", 2250 * T, 4500 * T, 180),  # NVIDIA HGX B200: 2.25 PF bf16, 4.5 PF fp8 dense per GPU (2x with sparsity)
])
def test_headline_figures_are_the_dense_datasheet_ones(name, bf16, fp8, memory_gib):
    gpu = load_gpu(name)
    assert gpu.peak("bf16") == pytest.approx(bf16)
    if fp8:
        assert gpu.peak("fp8") == pytest.approx(fp8, rel=1e-3)
    assert gpu.memory_bytes == memory_gib * 2**30


@pytest.mark.parametrize("alias,name", [("h100", "h100-sxm"), ("H100-SXM", "h100-sxm"), ("a100", "a100-80gb")])
def test_aliases_resolve(alias, name):
    assert load_gpu(alias).name == name


def test_a100_has_no_fp8_and_says_which_dtypes_it_has():
    r = run("cost", "gpt2", "--tokens", "1B", "--gpu", "a100-80gb", "--dtype", "fp8")
    assert r.code == 2 and "fp8" in r.err and "bf16" in r.err


def test_the_price_table_states_its_date_and_covers_every_accelerator():
    table = prices()
    assert table.as_of.startswith("2026") and set(gpu_names()) <= set(table.prices)


def test_a_users_own_gpu_file(tmp_path):
    path = tmp_path / "my-gpu.yaml"
    path.write_text("name: my-gpu\nmemory_bytes: 48G\nmemory_bandwidth: 1T\npeak_flops_dense: {bf16: 200T}\n")
    assert load_gpu(str(path)).peak("bf16") == 200 * T
    assert run("gpus", "--json").json["gpus"][0]["name"] == gpu_names()[0]


@pytest.mark.parametrize("name,both_ways", [
    ("a100-80gb", 64e9), ("a800-80gb", 64e9), ("l4", 64e9),  # datasheets: "PCIe Gen4: 64GB/s"
    ("h100-sxm", 128e9), ("h200", 128e9), ("mi300x", 128e9),  # "PCIe Gen5: 128GB/s"
])
def test_host_links_are_the_datasheets_pcie_generation(name, both_ways):
    link = load_gpu(name).host_link
    assert link is not None and 2 * link.bandwidth == both_ways


def test_the_a800_is_the_a100_with_nvlink_cut_to_400_gb_s():
    a800, a100 = load_gpu("a800-80gb"), load_gpu("a100-80gb")
    assert a800.interconnect is not None and 2 * a800.interconnect.bandwidth == 400e9  # A800 datasheet, both ways
    assert (a800.peak("bf16"), a800.memory_bytes, a800.memory_bandwidth) == \
           (a100.peak("bf16"), a100.memory_bytes, a100.memory_bandwidth)


@pytest.mark.parametrize("name,mib", [("a10g", 23028), ("l4", 23034)])
def test_ecc_gddr6_cards_hold_what_nvidia_smi_shows(name, mib):
    assert load_gpu(name).memory_bytes == mib * 2**20  # nvidia-smi with ECC on, as clouds run them
