"""Small helpers shared by the Hydra entry points: preset resolution, thread pinning, device choice."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf


def resolve_preset(node: DictConfig, preset: str, group: str | None = None) -> dict[str, Any]:
    """``node`` without its ``presets`` mapping, merged with ``presets[preset]``, as plain containers.

    Command-line overrides of the node (``<group>.key=value``) are applied again after the
    preset, so what the user types always wins over the preset.
    """
    presets = node.get("presets", {})
    if preset not in presets:
        raise ValueError(f"preset '{preset}' is not defined for '{node.get('name', group)}'; "
                         f"choose from {sorted(presets)}")
    base = OmegaConf.masked_copy(node, [k for k in node.keys() if k != "presets"])
    merged = OmegaConf.merge(base, presets[preset])
    if group is not None:
        user = [o.split(".", 1)[1] for o in cli_overrides() if o.lstrip("+~").startswith(f"{group}.") and "=" in o]
        if user:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([u.lstrip("+~") for u in user]))
    return OmegaConf.to_container(merged, resolve=True)


def cli_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def set_threads(n: int | None = None) -> int:
    """Pin torch/BLAS threads to this job's CPU allocation (SLURM, affinity) or ``n``."""
    if n is None:
        n = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or len(os.sched_getaffinity(0))
    import torch

    torch.set_num_threads(max(1, n))
    return n


def resolve_device(name: str | None = "auto"):
    """``"auto"``/``None``: the first CUDA device when there is one, else the CPU; otherwise ``torch.device(name)``."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was asked for but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use device=cpu or device=auto")
    return device


def parse_shard(text: str) -> tuple[int, int]:
    i, _, n = str(text).partition("/")
    i, n = int(i), int(n or 1)
    if not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {text!r}")
    return i, n
