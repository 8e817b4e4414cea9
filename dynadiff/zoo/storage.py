"""Expert checkpoints on disk: tensors-only safetensors + ``config.json``, written atomically.

An expert lives in a directory ``.../env_0003/seed_002/``; it is written under a unique temporary
name and renamed when both files are complete, so a killed run loses at most the expert in progress
and never leaves a directory that looks complete. ``config.json`` records the key of the inputs the
expert was trained on and the SHA-256 of its weights file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..io import atomic_path, file_digest

WEIGHTS, CONFIG = "weights.safetensors", "config.json"


def tensor_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state as plain contiguous tensors (drops neuraloperator's non-tensor ``_metadata``)."""
    return {
        k: v.detach().contiguous()
        for k, v in module.state_dict().items()
        if isinstance(v, torch.Tensor)
    }


def save_checkpoint(path: str | Path, module: nn.Module, config: Mapping[str, Any]) -> Path:
    """Write ``weights.safetensors`` + ``config.json`` (with the weights' SHA-256) atomically; refuses
    weights that hold NaN or Inf."""
    state = tensor_state(module)
    bad = [k for k, v in state.items() if v.is_floating_point() or v.is_complex()]
    bad = [k for k in bad if not torch.isfinite(state[k]).all()]
    if bad:
        raise FloatingPointError(
            f"{path}: not saved, non-finite weights in {bad[:3]} (training diverged)"
        )
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file(state, str(tmp / WEIGHTS))
        meta = {**config, "weights_sha256": file_digest(tmp / WEIGHTS), "complete": True}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return Path(path)


def is_complete(
    path: str | Path, expected_keys: set[str] | None = None, key: str | None = None
) -> bool:
    """Both files present, config marked complete (and written under ``key`` when given), weights
    with the recorded SHA-256 and the expected tensor names."""
    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG).read_text())
        if not cfg.get("complete") or (key is not None and cfg.get("key") != key):
            return False
        if file_digest(path / WEIGHTS) != cfg.get("weights_sha256"):
            return False
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS), "pt") as f:
            keys = set(f.keys())
        return expected_keys is None or keys == expected_keys
    except Exception:  # noqa: BLE001 - unreadable in any way: not complete
        return False


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    return load_file(str(path / WEIGHTS)), json.loads((path / CONFIG).read_text())


def load_into(module: nn.Module, path: str | Path) -> nn.Module:
    state, _ = load_checkpoint(path)
    module.load_state_dict(state, strict=True)
    return module
