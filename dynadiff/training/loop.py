"""The one training loop of the project (zoo experts, weight VAE, DiT + prompter).

AdamW; a constant learning rate or linear warm-up followed by cosine decay to zero; gradient-norm
clipping; a NaN/Inf guard that names the step and the loss term; CSV/JSONL logging (TensorBoard
optional); a progress bar; periodic atomic checkpoints that a killed run resumes from exactly,
and only when the checkpoint was written under the same key (config and inputs).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..distributed import SINGLE, World
from ..io import CheckpointError, load_torch, save_torch


@dataclass(frozen=True)
class LoopConfig:
    """How to optimise: every field comes from the stage's config section.

    Args:
        steps: optimiser steps. lr: peak learning rate. weight_decay: AdamW weight decay.
        grad_clip: clip the global gradient norm to this (``None``/0: off).
        schedule: ``"constant"`` or ``"cosine"`` (linear warm-up over ``warmup`` steps, then cosine to 0).
        log_every, ckpt_every: logging and checkpoint periods in steps (checkpoints need ``checkpoint``).
        tensorboard: also log to TensorBoard.
        plateau_every, plateau_patience: with ``plateau_every > 0`` and a ``validate`` function, the
            validation loss is measured every ``plateau_every`` steps; training stops when it has not
            improved for ``plateau_patience`` measurements, and the best weights are kept (``steps``
            is then the budget; the schedule still spans it).
        ema_decay: keep an exponential moving average of the parameters with this decay (warmed up
            as ``min(ema_decay, (1 + step) / (10 + step))``) and hand it back at the end instead of
            the last iterate (0: off). The average smooths the optimiser's noise out of the weights,
            as diffusion models are usually trained (DiT: 0.9999 over 400k steps). Plateau stopping
            keeps its best iterate instead.
    """

    steps: int
    lr: float
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    schedule: str = "constant"
    warmup: int = 0
    log_every: int = 50
    ckpt_every: int = 250
    tensorboard: bool = False
    plateau_every: int = 0
    plateau_patience: int = 5
    ema_decay: float = 0.0

    @classmethod
    def from_section(cls, cfg: Mapping[str, Any], schedule: str) -> LoopConfig:
        """From a config section (``zoo.finetune``, ``generator.vae``, ...): the keys this loop uses."""
        names = set(cls.__dataclass_fields__) - {"schedule"}
        return cls(schedule=schedule, **{k: cfg[k] for k in names if k in cfg})


def lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return (
            min(1.0, (step + 1) / max(1, warmup))
            * 0.5
            * (1 + math.cos(math.pi * min(step, steps) / steps))
        )
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (constant, cosine)")


def _global_values(terms: Mapping[str, Tensor], world: World) -> dict[str, float]:
    """The loss terms as floats, averaged across ranks (the global batch's values)."""
    v = torch.stack([t.detach().double().reshape(()) for t in terms.values()])
    world.average([v])
    return dict(zip(terms, v.tolist(), strict=True))


def check_finite(step: int, terms: Mapping[str, Tensor | float]) -> None:
    """Stop with a message naming the step and the loss term that is NaN or infinite."""
    for name, v in terms.items():
        value = float(v.detach()) if isinstance(v, Tensor) else float(v)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"loss term '{name}' is {value} at step {step}; stopping "
                "(lower the learning rate or check the inputs)"
            )


def train(
    model: nn.Module,
    loss_fn: Callable[[int], dict[str, Tensor]],
    cfg: LoopConfig,
    generator: torch.Generator,
    *,
    checkpoint: str | Path | None = None,
    key: Any = None,
    log_dir: str | Path | None = None,
    desc: str | None = None,
    validate: Callable[[], float] | None = None,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Optimise ``model``'s parameters on ``loss_fn(step) -> {"loss": total, **terms}``.

    Args:
        model: the parameters to train (a module, or a ``ModuleDict`` of several).
        loss_fn: draws its batch with ``generator`` and returns the total loss under ``"loss"`` and any
            other terms to guard and log.
        cfg: optimisation settings.
        generator: the batch-sampling random generator; its state (and the global torch RNG state)
            is checkpointed, so a resumed run draws the same batches as an uninterrupted one.
        checkpoint: resumable state file (``None``: no checkpoints).
        key: identifies what is trained on what (config and input digests); a checkpoint written
            under another key is not resumed: the run starts afresh and overwrites it.
        log_dir: where ``metrics.csv``/``metrics.jsonl`` go (``None``: no files).
        desc: progress-bar label (``None``: no bar).
        validate: returns the validation loss, for stopping at a plateau (``cfg.plateau_every``).
        world: data-parallel processes (:mod:`dynadiff.distributed`): ``loss_fn`` returns the mean
            over this rank's share of the global batch; gradients and logged terms are averaged
            across ranks; rank 0 alone logs, shows progress and writes the checkpoint.

    Returns:
        ``{"losses": [total loss per step run now], "start": first step run now, "steps": the step
        count reached, "best_step": the step whose weights were kept (plateau stopping only)}``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.steps, cfg.warmup, cfg.schedule)
    )
    start = 0
    world.broadcast([t for t in model.state_dict().values() if isinstance(t, Tensor)])
    ema = _EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = _resumable(checkpoint, key)
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        generator.set_state(state["rng"]["generator"])
        start = int(state["step"])
    logger = MetricLogger(log_dir, cfg.tensorboard) if log_dir is not None and world.main else None
    losses: list[float] = []
    model.train()
    bar = tqdm(
        range(start, cfg.steps),
        desc=desc,
        unit="step",
        disable=desc is None or not world.main,
        initial=start,
        total=cfg.steps,
        leave=False,
    )
    plateau = _Plateau(model, validate, cfg) if cfg.plateau_every and validate is not None else None
    steps = start
    for step in bar:
        terms = loss_fn(step)
        loss = terms["loss"]
        values = _global_values(terms, world)  # every rank stops together on a NaN
        check_finite(step, values)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        world.average_gradients(params)
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(step)
        losses.append(values["loss"])
        last = step == cfg.steps - 1
        if step % cfg.log_every == 0 or last:
            bar.set_postfix({k: f"{v:.3e}" for k, v in values.items()})
            if logger is not None:
                logger.log(step, values)
        if checkpoint is not None and world.main and ((step + 1) % cfg.ckpt_every == 0 or last):
            save_torch(
                checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": step + 1,
                    "key": key,
                    "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state()},
                    **({"ema": ema.shadow} if ema is not None else {}),
                },
            )
        steps = step + 1
        if (
            plateau is not None
            and ((step + 1) % cfg.plateau_every == 0 or last)
            and plateau.stop(step + 1)
        ):
            break
    if plateau is not None:
        plateau.restore()
    elif ema is not None:
        ema.copy_to_params()
    model.eval()
    return {
        "losses": losses,
        "start": start,
        "steps": steps,
        "best_step": plateau.best_step if plateau is not None else steps,
    }


class _EMA:
    """Exponential moving average of ``params`` (the ``shadow`` tensors)."""

    def __init__(self, params: list[nn.Parameter], decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach(), 1 - d)

    def load(self, shadow: list[Tensor]) -> None:
        self.shadow = [t.clone() for t in shadow]

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for p, s in zip(self.params, self.shadow, strict=True):
            p.copy_(s)


class _Plateau:
    """Keeps the weights of the best validation loss; says when it stopped improving."""

    def __init__(self, model: nn.Module, validate: Callable[[], float], cfg: LoopConfig):
        self.model, self.validate, self.patience = model, validate, cfg.plateau_patience
        self.best, self.best_step, self.best_state, self.bad = math.inf, 0, None, 0

    def stop(self, step: int) -> bool:
        self.model.eval()
        value = self.validate()
        self.model.train()
        if value < self.best:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_state = {
                k: v.detach().clone()
                for k, v in self.model.state_dict().items()
                if isinstance(v, Tensor)
            }
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)


def _resumable(path: str | Path | None, key: Any) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
    try:
        state = load_torch(path)
    except CheckpointError as e:
        print(f"{e}; starting afresh")
        return None
    if state.get("key") != key:
        print(f"{path}: checkpoint of another configuration or other inputs, starting afresh")
        return None
    return state


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
