"""Composing configs outside and inside Hydra, and the per-job settings every entry point applies.

The YAML files under ``dynadiff/configs`` are the only source of defaults. Presets are config-group
options (``preset=tiny|small|paper``): ``preset/<group>/...`` files override each group after its
defaults, and command-line overrides are applied last, so what a user types always wins.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf


def compose(config_name: str = "dynadiff", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The composed config as plain containers, exactly as the command line would build it.

    ``compose("dynadiff", ["preset=tiny", "generator.dit.steps=10"])`` equals what
    ``dynadiff preset=tiny generator.dit.steps=10`` runs with (without the ``hydra`` section).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("dynadiff.configs", version_base="1.3"):
        return to_plain(hydra_compose(config_name, overrides=list(overrides)))


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """Resolved plain containers without Hydra's own section."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    return plain


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
        raise ValueError(
            f"device={name!r} was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}); use device=cpu or device=auto"
        )
    return device


def parse_shard(text: str) -> tuple[int, int]:
    i, _, n = str(text).partition("/")
    i, n = int(i), int(n or 1)
    if not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {text!r}")
    return i, n
