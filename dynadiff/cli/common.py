"""What every Hydra entry point does first: plain config, threads, device, layout."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..config import resolve_device, set_threads, to_plain
from ..layout import ArtifactLayout
from ..pipeline import Run


def make_run(cfg: DictConfig) -> Run:
    """The :class:`~dynadiff.pipeline.Run` of a Hydra job (threads pinned, device resolved)."""
    plain = to_plain(cfg)
    set_threads(plain.get("threads"))
    device = resolve_device(plain.get("device", "cpu"))
    return Run(
        plain,
        ArtifactLayout.from_config(plain),
        device,
        bool(plain["progress"]),
        Path(HydraConfig.get().runtime.output_dir),
    )
