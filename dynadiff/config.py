"""Small helpers shared by the Hydra entry points: preset resolution and thread pinning."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf


def resolve_preset(node: DictConfig, preset: str) -> dict[str, Any]:
    """``node`` without its ``presets`` mapping, merged with ``presets[preset]``, as plain containers."""
    presets = node.get("presets", {})
    if preset not in presets:
        raise ValueError(f"preset '{preset}' is not defined for '{node.get('name')}'; choose from {sorted(presets)}")
    base = OmegaConf.masked_copy(node, [k for k in node.keys() if k != "presets"])
    return OmegaConf.to_container(OmegaConf.merge(base, presets[preset]), resolve=True)


def set_threads(n: int | None = None) -> int:
    """Pin torch/BLAS threads to this job's CPU allocation (SLURM, affinity) or ``n``."""
    if n is None:
        n = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or len(os.sched_getaffinity(0))
    import torch

    torch.set_num_threads(max(1, n))
    return n


def parse_shard(text: str) -> tuple[int, int]:
    i, _, n = str(text).partition("/")
    i, n = int(i), int(n or 1)
    if not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {text!r}")
    return i, n
