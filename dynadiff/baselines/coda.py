"""CoDA-style context adaptation (Kirchmeyer et al. 2022) on the zoo's expert.

Every environment's expert is ``theta_e = theta + W xi_e``: shared weights ``theta`` (initialised from
the base), a linear hypernetwork ``W`` over *all* the expert's parameters (complex spectral weights as
(real, imaginary) pairs) and a context ``xi_e`` of ``context_dim`` numbers per environment, trained
jointly on the seen environments with CoDA's regularisers (row-wise L1 of the L2 norms of ``W``,
``l12``; squared norm of the contexts, ``l2c``). At test time only ``xi`` is fitted
(:mod:`.context`).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .context import ContextExpert


class CoDAExpert(ContextExpert):
    """``theta`` (flat, real), the hypernetwork ``W (n_params, d)`` and contexts ``xi (E, d)``.

    Args:
        base: the expert whose architecture and weights start ``theta``.
        num_envs: training environments ``E``. context_dim: ``d``. residual: the expert predicts increments.
        w_scale: initial scale of ``W``.
    """

    def __init__(
        self,
        base: nn.Module,
        num_envs: int,
        context_dim: int,
        residual: bool,
        w_scale: float = 1e-3,
    ):
        super().__init__(base, residual)
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

    @property
    def contexts(self) -> Tensor:
        return self.xi

    def weights(self, context: Tensor) -> dict[str, Tensor]:
        flat = self.theta + self.W @ context
        out, start = {}, 0
        for name, shape, cplx in zip(self.names, self.shapes, self.complex, strict=True):
            n = shape.numel() * (2 if cplx else 1)
            t = flat[start : start + n]
            out[name] = torch.view_as_complex(t.view(*shape, 2)) if cplx else t.view(shape)
            start += n
        return out

    def regularisation(self, cfg: Mapping[str, Any]) -> Tensor:
        return cfg["l12"] * self.W.norm(dim=1).sum() + cfg["l2c"] * self.xi.pow(2).sum()
