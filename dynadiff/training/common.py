"""What every training loop shares: atomic resumable checkpoints, CSV/JSONL logging, NaN guards."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch


def save_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary name, then rename: a killed run never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def resume_state(path: str | Path, cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None`` when absent or written under another config (then the
    run starts afresh and overwrites it: resuming a different config would silently mix two runs)."""
    state = load_state(path)
    if state is not None and state.get("config") != dict(cfg):
        print(f"{path}: checkpoint of another configuration, starting afresh")
        return None
    return state


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def set_rng_state(state: Mapping[str, torch.Tensor], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])


def check_finite(step: int, terms: Mapping[str, torch.Tensor | float]) -> None:
    """Stop with a message naming the step and the loss term that is NaN or infinite."""
    for name, v in terms.items():
        value = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
        if value != value or value in (float("inf"), float("-inf")):
            raise FloatingPointError(f"loss term '{name}' is {value} at step {step}; stopping "
                                     "(lower the learning rate or check the inputs)")


def optimizer_step(step: int, loss: torch.Tensor, terms: Mapping[str, torch.Tensor], opt: torch.optim.Optimizer,
                   params, grad_clip: float | None = 1.0) -> None:
    """NaN guard, backward, gradient clipping, update."""
    check_finite(step, {**terms, "loss": loss})
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


def log_and_checkpoint(step: int, cfg: Mapping[str, Any], logger: MetricLogger, bar, terms: Mapping[str, torch.Tensor],
                       path: Path, state) -> None:
    """Log every ``log_every`` steps and save ``state()`` every ``ckpt_every`` steps (and at the last step)."""
    last = step == cfg["steps"] - 1
    if step % cfg.get("log_every", 50) == 0 or last:
        logger.log(step, {k: v.item() for k, v in terms.items()})
        bar.set_postfix({k: f"{v.item():.3e}" for k, v in terms.items()})
    if (step + 1) % cfg.get("ckpt_every", 200) == 0 or last:
        save_state(path, {**state(), "step": step + 1, "config": dict(cfg)})


class MetricLogger:
    """Appends ``{"step": ..., **metrics}`` rows to ``metrics.jsonl`` and ``metrics.csv`` (TensorBoard optional)."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.dir / "metrics.jsonl"
        self.csv = self.dir / "metrics.csv"
        self.fields: list[str] | None = None
        if self.csv.exists():
            with self.csv.open() as f:
                self.fields = next(csv.reader(f), None)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.dir / "tensorboard"))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.fields is None:
            self.fields = list(row)
            with self.csv.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with self.csv.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
