"""Expert checkpoints on disk: tensors-only safetensors + ``config.json``, written atomically.

An expert lives in a directory ``.../env_0003/seed_002/``; it is written as ``seed_002.tmp-<pid>/``
and renamed when both files are complete, so a killed run loses at most the expert in progress
and never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS, CONFIG = "weights.safetensors", "config.json"


def tensor_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state as plain contiguous tensors (drops neuraloperator's non-tensor ``_metadata``)."""
    return {k: v.detach().contiguous() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def save_checkpoint(path: str | Path, module: nn.Module, config: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(tensor_state(module), str(tmp / WEIGHTS))
    (tmp / CONFIG).write_text(json.dumps({**config, "complete": True}, indent=1, sort_keys=True))
    if path.exists():  # replacing a stale checkpoint
        shutil.rmtree(path)
    os.rename(tmp, path)
    return path


def is_complete(path: str | Path, expected_keys: set[str] | None = None) -> bool:
    """Both files present, config marked complete, weights readable (with the expected tensor names)."""
    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG).read_text())
        if not cfg.get("complete"):
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


def clean_temporaries(root: str | Path) -> int:
    """Remove ``*.tmp-<pid>`` directories left by killed runs whose process is gone."""
    n = 0
    for tmp in Path(root).rglob("*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            n += 1
    return n


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
