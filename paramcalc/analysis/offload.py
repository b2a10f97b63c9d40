"""What offloading to the host costs a plan stage: the host-device copies over PCIe, and the
optimizer step that ZeRO-Offload runs on the CPU.

analysis/memory.py says what lives in CPU memory and how many bytes cross PCIe per optimizer
step and per micro-batch; this module turns them into seconds (analysis/plan.py and
analysis/placement.py add them to a stage's time, not overlapped with compute).
"""

from __future__ import annotations

from typing import NamedTuple

from paramcalc.analysis.settings import OPTIMIZER_BYTES
from paramcalc.inputs.gpu_file import Gpu

# Host-device copies of offloaded state run over each GPU's own host link (each GPU of an HGX node has its
# own x16 link to a CPU or switch): the catalog's `host_link`, per direction. Copies sustain about 55 of PCIe
# Gen5 x16's 64 GB/s (pinned memory, large copies; NVIDIA's nvbandwidth on H100 hosts measures 53-57 GB/s),
# the share taken for every generation (an A100's Gen4 x16 copies ~25 of 32 GB/s in bandwidthTest: errs
# fast there by a few percent). A card file without `host_link` gets PCIe Gen5 x16.
PCIE_GEN5_X16 = 64e9
PCIE_EFFICIENCY = 55 / 64
PCIE_BYTES_PER_SECOND = PCIE_GEN5_X16 * PCIE_EFFICIENCY  # 55 GB/s: the default host link's copies

# The host's memory bandwidth, per node: a DGX A100 (2 x AMD EPYC 7742, NVIDIA's DGX A100 system
# specifications), whose sockets each drive 8 channels of DDR4-3200: 8 x 3200 MT/s x 8 bytes = 204.8 GB/s
# (AMD's EPYC 7002 product specifications, "Per Socket Mem BW 204.8 GB/s"). The DRAM peak: streaming
# kernels sustain less of it, so times from it err fast; newer hosts (DDR5, 12 channels a socket) have
# more, so on them they err slow. One figure for every card.
HOST_MEMORY_BYTES_PER_SECOND = 2 * 204.8e9

# ZeRO-Offload's minimal per-step PCIe traffic per offloaded parameter (Ren et al. 2021, section 4.1): its
# 16-bit gradient out to the CPU and its updated 16-bit weight back. DeepSpeed moves more (zero_offload_pcie)
OFFLOAD_PCIE_BYTES_PER_PARAM = 2 + 2

# The dtype ZeRO-3 accumulates offloaded gradients in: OpenRLHF's get_train_ds_config sets
# data_types.grad_accum_dtype "fp32" (DeepSpeed's own default under ZeRO is the model dtype, 2 bytes: where a run
# keeps it, the ZeRO-3 term below errs slow)
ZERO3_ACCUM_BYTES = 4


class OffloadTraffic(NamedTuple):
    """One GPU's offload traffic over PCIe, and the parameters its process then steps on the CPU."""

    step_bytes: int  # per optimizer step
    micro_bytes: int  # per micro-batch (a step of A micro-batches moves step_bytes + A * micro_bytes)
    cpu_params: int = 0  # parameters CPUAdam steps (ZeRO-Offload's shard)


def streamed_bytes(sequences: int, micro: int, dp: int, offloaded: int) -> int:
    """PCIe bytes per GPU that offloaded frozen weights (the reference and reward model: DeepSpeed-Chat's
    --offload_reference_model, OpenRLHF's --ref_reward_offload) cost over `sequences` forwards: each of
    the `dp` ranks streams its `offloaded` bytes in once per micro-batch of `micro` sequences."""
    return -(-sequences // (micro * dp)) * offloaded


def zero_offload_pcie(shard: int, zero: int) -> tuple[int, int]:
    """(per optimizer step, per micro-batch) PCIe bytes of ZeRO-Offload's gradients and weights for a
    shard of `shard` trained parameters, as DeepSpeed v0.13.2 (OpenRLHF's benchmark version) runs
    `offload_optimizer: cpu` with gradient accumulation over A micro-batches:

    - ZeRO-1/2 (stage_1_and_2.py `copy_grads_in_partition` -> `async_accumulate_grad_in_cpu_via_gpu`):
      every micro-batch but the first copies the 16-bit accumulated shard from pinned CPU memory to the
      GPU and adds it (2 B in), every one but the last copies the sum back out (2 B out), and at the step
      boundary `async_inplace_copy_grad_to_fp32_buffer_from_gpu` sends it as fp32 (`.float()` on the
      GPU: 4 B out); the updated 16-bit weights come back (2 B). 2(A - 1) + 2(A - 1) + 4 + 2 = 4A + 2.
    - ZeRO-3 (stage3.py `partition_grads`): the accumulation buffer lives in pinned CPU memory in
      ZERO3_ACCUM_BYTES; the first micro-batch copies the shard into it and back to the GPU (`.to(device)`),
      each later one copies it to the GPU, adds and copies it back: 2 x 4 B per micro-batch; at the
      boundary the fp32 shard goes to the optimizer's CPU gradient buffer (4 B) and the 16-bit weights
      come back (2 B). 8A + 6.

    Both run inside backward's gradient hooks. ZeRO-2's copies run on the compute stream (DeepSpeed's
    `overlap_comm` defaults to off below stage 3, and reduce_ipg_grads says its copy stream "is disabled
    because of race with reduce"), so they serialise with backward, as the plan times them. ZeRO-3's run on
    its reduce-and-partition side stream (`overlap_comm` defaults on at stage 3), so part hides under
    backward and this term, added serially, errs slow there."""
    if zero >= 3:
        return (4 + 2) * shard, 2 * ZERO3_ACCUM_BYTES * shard
    return 2 * shard, (2 + 2) * shard


def cpu_adam_seconds(params: int, gpus_per_node: int) -> float:
    """Seconds of one optimizer step run on the CPU over `params` parameters (one GPU's shard): ZeRO-Offload
    (Ren et al. 2021, arXiv 2101.06840; DeepSpeed's `offload_optimizer: cpu`, OpenRLHF's --adam_offload)
    steps the fp32 master, momentum and variance where they live, on the CPU, with DeepSpeed's CPUAdam
    (vectorised and multithreaded: DeepSpeed's ZeRO-Offload tutorial), and the GPUs wait for it. A
    streaming update is bound by memory bandwidth: per parameter it reads and writes the fp32 master, m
    and v, reads the fp32 gradient and writes the 16-bit weight copy, analysis/settings.py's OPTIMIZER_BYTES
    (30; DeepSpeed keeps offloaded optimizer states in fp32). Each GPU's process steps its
    shard at once with the others of its node, so it holds 1 / gpus_per_node of the host's bandwidth.
    Errs fast by the DRAM peak (above) and by CPUAdam's arithmetic where the cores, not the memory, bound
    it; errs slow where fewer of the node's GPUs step at once (RL groups smaller than a node), and by the
    GPU optimizer step step.py still counts in the MFU of an offloaded stage."""
    return params * OPTIMIZER_BYTES / (HOST_MEMORY_BYTES_PER_SECOND / gpus_per_node)


def host_rate(card: Gpu) -> float:
    """Bytes/s one GPU's host-device copies sustain per direction: its host link x PCIE_EFFICIENCY."""
    return (card.host_link.bandwidth if card.host_link is not None else PCIE_GEN5_X16) * PCIE_EFFICIENCY


def offloaded_step_seconds(traffic: OffloadTraffic, micro_batches: int, card: Gpu) -> float:
    """Seconds offload adds to each GPU's optimizer step of `micro_batches` micro-batches: the PCIe
    traffic (memory.py's pcie_bytes_per_step, and pcie_bytes_per_micro_batch for each micro-batch) over
    the card's host link, then CPUAdam over the shard; one after the other and not overlapped with the
    GPU's work (errs slow where DeepSpeed's ZeRO-3 overlaps the gradient copies with backward:
    zero_offload_pcie)."""
    pcie = traffic.step_bytes + micro_batches * traffic.micro_bytes
    return pcie / host_rate(card) + cpu_adam_seconds(traffic.cpu_params, card.gpus_per_node)
