"""Few-shot fine-tuning: the base fine-tuned on the one-step pairs of the observed frames.

The rule is validation-free, as a user facing a new environment with L frames would apply it: a copy
of the base, AdamW at a fixed learning rate (the zoo's fine-tuning rate), a fixed number of steps,
every one of the L - 1 pairs in each batch, no schedule. With a single frame there is no pair: the
base is returned unchanged (0 steps).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..training.loop import LoopConfig, train
from ..zoo.experts import advance


def finetune_on_observations(
    base: nn.Module, residual: bool, steps: int, cfg: Mapping[str, Any], seed: int = 0
) -> Callable[[int, Tensor], Callable[[Tensor], Tensor]]:
    """A harness method fine-tuning a copy of ``base`` for ``steps`` steps on the observed pairs.

    Args:
        base: the pre-trained expert (left untouched).
        residual: the expert predicts increments.
        steps: gradient steps per environment.
        cfg: ``lr``, ``weight_decay``, ``grad_clip`` (``baselines.finetune_obs``).
    """
    loop = LoopConfig(
        steps=max(1, steps),
        lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
        grad_clip=cfg["grad_clip"],
        schedule="constant",
        log_every=max(1, steps),
    )

    def adapt(env: int, obs: Tensor) -> Callable[[Tensor], Tensor]:
        net = copy.deepcopy(base)
        if steps > 0 and len(obs) > 1:
            x, y = obs[:-1], obs[1:]  # the L - 1 observed pairs, all in every step

            def loss_fn(step: int) -> dict[str, Tensor]:
                return {"loss": torch.mean((advance(net, x, residual) - y) ** 2)}

            train(net, loss_fn, loop, torch.Generator().manual_seed(seed))
            adapt.grad_steps = steps
        else:
            adapt.grad_steps = 0
        net.eval()
        return lambda x: advance(net, x, residual)

    adapt.grad_steps = 0  # the steps of the last call (0 with a single frame)
    adapt.trainable = sum(p.numel() * (2 if p.is_complex() else 1) for p in base.parameters())
    return adapt
