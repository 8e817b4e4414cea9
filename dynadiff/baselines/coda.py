"""CoDA-style context adaptation (Kirchmeyer et al. 2022) on the zoo's expert.

Every environment's expert is ``theta_e = theta + W xi_e``: shared weights ``theta`` (initialised from
the base), a linear hypernetwork ``W`` over *all* the expert's parameters (complex spectral weights as
(real, imaginary) pairs) and a context ``xi_e`` of ``context_dim`` numbers per environment, trained
jointly on the seen environments with CoDA's regularisers (row-wise L1 of the L2 norms of ``W``,
``l12``; squared norm of the contexts, ``l2c``). At test time only ``xi`` is fitted on the observed
one-step pairs, from the mean training context, for a capped number of Adam steps.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..training.loop import LoopConfig, train
from ..zoo.experts import advance


class CoDAExpert(nn.Module):
    """``theta`` (flat, real), the hypernetwork ``W (n_params, d)`` and contexts ``xi (E, d)``.

    Args:
        base: the expert whose architecture and weights start ``theta`` (kept as a template).
        num_envs: training environments ``E``. context_dim: ``d``. residual: the expert predicts increments.
    """

    def __init__(
        self,
        base: nn.Module,
        num_envs: int,
        context_dim: int,
        residual: bool,
        w_scale: float = 1e-3,
    ):
        super().__init__()
        params = dict(base.named_parameters())
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.complex = [p.is_complex() for p in params.values()]
        flat = torch.cat(
            [
                (torch.view_as_real(p) if p.is_complex() else p).detach().flatten()
                for p in params.values()
            ]
        )
        self.theta = nn.Parameter(flat.clone())
        self.W = nn.Parameter(w_scale * torch.randn(flat.numel(), context_dim) / context_dim**0.5)
        self.xi = nn.Parameter(torch.zeros(num_envs, context_dim))
        self.residual = residual
        object.__setattr__(self, "template", base)  # architecture only: its own weights are unused

    def weights(self, xi: Tensor) -> dict[str, Tensor]:
        """The expert's parameters for context ``xi (d,)``."""
        flat = self.theta + self.W @ xi
        out, start = {}, 0
        for name, shape, cplx in zip(self.names, self.shapes, self.complex, strict=True):
            n = shape.numel() * (2 if cplx else 1)
            t = flat[start : start + n]
            out[name] = torch.view_as_complex(t.view(*shape, 2)) if cplx else t.view(shape)
            start += n
        return out

    def step(self, x: Tensor, xi: Tensor) -> Tensor:
        return advance(
            lambda y: functional_call(self.template, self.weights(xi), (y,)), x, self.residual
        )

    def regularisation(self, l12: float, l2c: float) -> Tensor:
        return l12 * self.W.norm(dim=1).sum() + l2c * self.xi.pow(2).sum()


def train_coda(
    model: CoDAExpert,
    pairs: list[tuple[Tensor, Tensor]],
    cfg: Mapping[str, Any],
    seed: int,
    desc: str | None = None,
) -> list[float]:
    """Joint training: each step draws a batch from one seen environment (its pairs ``x, y``)."""
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> dict[str, Tensor]:
        e = int(torch.randint(len(pairs), (1,), generator=g))
        x, y = pairs[e]
        idx = torch.randint(len(x), (min(cfg["batch_size"], len(x)),), generator=g)
        fit = torch.mean((model.step(x[idx], model.xi[e]) - y[idx]) ** 2)
        reg = model.regularisation(cfg["l12"], cfg["l2c"])
        return {"loss": fit + reg, "fit": fit}

    return train(model, loss_fn, LoopConfig.from_section(cfg, "cosine"), g, desc=desc)["losses"]


def coda_method(model: CoDAExpert, cfg: Mapping[str, Any]) -> Callable[[int, Tensor], Callable]:
    """Harness method: fit only the context on the observed pairs (``adapt_steps`` Adam steps at
    ``adapt_lr`` from the mean training context), then step with it."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    xi_mean = model.xi.detach().mean(0)

    def adapt(env: int, obs: Tensor) -> Callable[[Tensor], Tensor]:
        xi = nn.Parameter(xi_mean.clone())
        steps = cfg["adapt_steps"] if len(obs) > 1 else 0
        if steps:
            x, y = obs[:-1], obs[1:]
            holder = nn.ParameterList([xi])
            loop = LoopConfig(steps=steps, lr=cfg["adapt_lr"], grad_clip=None, log_every=steps)
            train(
                holder,
                lambda s: {"loss": torch.mean((model.step(x, xi) - y) ** 2)},
                loop,
                torch.Generator(),
            )
        adapt.grad_steps = steps
        context = xi.detach()
        return lambda x: model.step(x, context)

    adapt.grad_steps = 0
    adapt.trainable = model.xi.shape[1]
    return adapt
