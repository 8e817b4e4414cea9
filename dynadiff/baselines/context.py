"""Context meta-learners: shared weights plus a small context per environment, only the context fitted
at test time (CoDA, GEPS). What differs between them is how the context becomes weights
(:meth:`ContextExpert.weights`); training and test-time adaptation are shared here.

Training (:func:`train_context_expert`): every step draws a batch of one-step pairs from one seen
environment and fits the shared weights and that environment's context jointly, plus the method's
regulariser. Adaptation (:func:`context_method`): every shared parameter is frozen; the context starts
at the mean training context and takes ``adapt_steps`` Adam steps at ``adapt_lr`` on the observed
one-step pairs (none with a single observed frame).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..training.loop import LoopConfig, train
from ..zoo.experts import advance


class ContextExpert(nn.Module):
    """An expert whose weights are a function of a context vector.

    Subclasses hold the shared parameters and the training contexts ``contexts (E, d)`` and define
    :meth:`weights` and :meth:`regularisation`.

    Args:
        template: the expert whose architecture is used (its own weights are never read after
            the subclass has copied them).
        residual: the expert predicts increments.
    """

    def __init__(self, template: nn.Module, residual: bool):
        super().__init__()
        self.residual = residual
        object.__setattr__(self, "template", template)  # architecture only: not a submodule

    @property
    def contexts(self) -> Tensor:
        """The training environments' contexts ``(E, d)`` (a parameter)."""
        raise NotImplementedError

    def weights(self, context: Tensor) -> dict[str, Tensor]:
        """The expert's parameters (name -> tensor, shapes and dtypes of the template) for
        ``context (d,)``."""
        raise NotImplementedError

    def regularisation(self, cfg: Mapping[str, Any]) -> Tensor:
        """The method's penalty on its shared parameters and contexts (a scalar)."""
        raise NotImplementedError

    def step(self, x: Tensor, context: Tensor) -> Tensor:
        """One step ``x (B, C, ...) -> (B, C, ...)`` of the expert for ``context (d,)``."""
        return advance(
            lambda y: functional_call(self.template, self.weights(context), (y,)), x, self.residual
        )


def train_context_expert(
    model: ContextExpert,
    pairs: list[tuple[Tensor, Tensor]],
    cfg: Mapping[str, Any],
    seed: int,
    desc: str | None = None,
) -> list[float]:
    """Joint training on the seen environments: ``pairs[e] = (x, y)`` are environment ``e``'s
    one-step pairs ``(N_e, C, ...)``; each step draws ``batch_size`` of one environment's pairs."""
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> dict[str, Tensor]:
        e = int(torch.randint(len(pairs), (1,), generator=g))
        x, y = pairs[e]
        idx = torch.randint(len(x), (min(cfg["batch_size"], len(x)),), generator=g)
        fit = torch.mean((model.step(x[idx], model.contexts[e]) - y[idx]) ** 2)
        return {"loss": fit + model.regularisation(cfg), "fit": fit}

    return train(model, loss_fn, LoopConfig.from_section(cfg, "cosine"), g, desc=desc)["losses"]


def context_method(
    model: ContextExpert, cfg: Mapping[str, Any]
) -> Callable[[int, Tensor], Callable]:
    """Harness method: fit only a context on the observed pairs, then step with it."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    mean_context = model.contexts.detach().mean(0)

    def adapt(env: int, obs: Tensor) -> Callable[[Tensor], Tensor]:
        context = nn.Parameter(mean_context.clone())
        steps = cfg["adapt_steps"] if len(obs) > 1 else 0
        if steps:
            x, y = obs[:-1], obs[1:]
            loop = LoopConfig(steps=steps, lr=cfg["adapt_lr"], grad_clip=None, log_every=steps)
            train(
                nn.ParameterList([context]),
                lambda s: {"loss": torch.mean((model.step(x, context) - y) ** 2)},
                loop,
                torch.Generator(),
            )
        adapt.grad_steps = steps
        fitted = context.detach()
        return lambda x: model.step(x, fitted)

    adapt.grad_steps = 0
    adapt.trainable = model.contexts.shape[1]
    return adapt
