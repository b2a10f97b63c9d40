"""What offloading to the host costs a plan stage: the host-device copies over PCIe, and the
optimizer step that ZeRO-Offload runs on the CPU.

analysis/memory.py says what lives in CPU memory and how many bytes cross PCIe per optimizer
step and per micro-batch; this module turns them into seconds (analysis/plan.py and
analysis/placement.py add them to a stage's time, not overlapped with compute).
"""

from __future__ import annotations

# Host-device copies of offloaded state: PCIe Gen5 x16 moves 64 GB/s per direction on paper and
# about 55 GB/s in practice (pinned memory, large copies; NVIDIA's nvbandwidth on H100 hosts measures
# 53-57 GB/s). Per GPU: each GPU of an HGX node has its own x16 link to a CPU or switch.
PCIE_BYTES_PER_SECOND = 55e9

# The host's memory bandwidth, per node: a DGX A100 (2 x AMD EPYC 7742, NVIDIA's DGX A100 system
# specifications), whose sockets each drive 8 channels of DDR4-3200: 8 x 3200 MT/s x 8 bytes = 204.8 GB/s
# (AMD's EPYC 7002 product specifications, "Per Socket Mem BW 204.8 GB/s"). The DRAM peak: streaming
# kernels sustain less of it, so times from it err fast; newer hosts (DDR5, 12 channels a socket) have
# more, so on them they err slow. One figure for every card, as PCIE_BYTES_PER_SECOND is.
HOST_MEMORY_BYTES_PER_SECOND = 2 * 204.8e9

# ZeRO-Offload's per-step PCIe traffic per offloaded parameter (memory.py, Ren et al. 2021, section 4.1):
# its 16-bit gradient out to the CPU and its updated 16-bit weight back
OFFLOAD_PCIE_BYTES_PER_PARAM = 2 + 2


def cpu_adam_seconds(params: int, gpus_per_node: int) -> float:
    """Seconds of one optimizer step run on the CPU over `params` parameters (one GPU's shard): ZeRO-Offload
    (Ren et al. 2021, arXiv 2101.06840; DeepSpeed's `offload_optimizer: cpu`, OpenRLHF's --adam_offload)
    steps the fp32 master, momentum and variance where they live, on the CPU, with DeepSpeed's CPUAdam
    (vectorised and multithreaded: DeepSpeed's ZeRO-Offload tutorial), and the GPUs wait for it. A
    streaming update is bound by memory bandwidth: per parameter it reads and writes the fp32 master, m
    and v, reads the fp32 gradient and writes the 16-bit weight copy, analysis/step.py's OPTIMIZER_BYTES
    (30; DeepSpeed keeps offloaded optimizer states in fp32). Each GPU's process steps its
    shard at once with the others of its node, so it holds 1 / gpus_per_node of the host's bandwidth.
    Errs fast by the DRAM peak (above) and by CPUAdam's arithmetic where the cores, not the memory, bound
    it; errs slow where fewer of the node's GPUs step at once (RL groups smaller than a node), and by the
    GPU optimizer step step.py still counts in the MFU of an offloaded stage."""
    from paramcalc.analysis.step import OPTIMIZER_BYTES

    return params * OPTIMIZER_BYTES / (HOST_MEMORY_BYTES_PER_SECOND / gpus_per_node)


def offloaded_step_seconds(step_bytes: int, gpus_per_node: int) -> float:
    """Seconds ZeRO-Offload adds to each GPU's optimizer step: `step_bytes` over PCIe (memory.py's
    pcie_bytes_per_step, 4 bytes a parameter), then CPUAdam over the same parameters; one after the
    other and not overlapped with the GPU's work (errs slow: DeepSpeed overlaps the gradient copies
    with backward)."""
    params = step_bytes // OFFLOAD_PCIE_BYTES_PER_PARAM
    return step_bytes / PCIE_BYTES_PER_SECOND + cpu_adam_seconds(params, gpus_per_node)
