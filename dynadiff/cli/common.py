"""What every Hydra entry point does: validate the config, pin threads, resolve the device, build the
layout, and turn expected failures into one line on stderr (``DYNADIFF_DEBUG=1``: the traceback)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..config import resolve_device, set_threads, to_plain
from ..data.store import DatasetError
from ..distributed import init_world
from ..io import CheckpointError
from ..layout import ArtifactLayout
from ..pipeline import Run
from ..validate import validate

EXPECTED = (ValueError, LookupError, OSError, FloatingPointError, DatasetError, CheckpointError)


def make_run(cfg: DictConfig, kind: str) -> Run:
    """The validated :class:`~dynadiff.pipeline.Run` of a Hydra job (threads pinned, device resolved)."""
    plain = to_plain(cfg)
    validate(plain, kind)
    set_threads(plain.get("threads"))
    device = resolve_device(plain.get("device", "cpu"))
    world = init_world(device)  # torchrun / srun: one process per rank
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return Run(
        plain,
        ArtifactLayout.from_config(plain),
        device,
        bool(plain["progress"]) and world.main,
        Path(HydraConfig.get().runtime.output_dir),
        world,
    )


def one_line_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Expected failures (bad config, bad or missing files, divergence) print ``<prog>: error: ...``
    and exit with status 2; ``DYNADIFF_DEBUG=1`` re-raises them with the full traceback."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except EXPECTED as e:
            if os.environ.get("DYNADIFF_DEBUG"):
                raise
            print(
                f"{Path(sys.argv[0]).name}: error: {e}\n(DYNADIFF_DEBUG=1 shows the traceback)",
                file=sys.stderr,
            )
            sys.exit(2)

    return wrapped
