"""GEPS-style low-rank adaptive conditioning (Koupaï et al. 2024) on the zoo's expert.

Every weight tensor of the expert gets a per-environment low-rank correction, as GEPS does in each
of its linear, convolution and spectral layers:

    W_e[i, o, ...] = W[i, o, ...] + sum_k A[i, k, ...] c_e[k] B[o, k, ...]      (ndim >= 2)
    b_e = b + c_e @ B_b                                                         (biases)

with the shared ``W, b`` initialised from the base and ``A, B`` per parameter: a rank-``d``
correction of the (first axis x second axis) matrix at every remaining index (every kernel offset,
every Fourier mode; complex for complex spectral weights). Which of the first two axes is the output
does not matter for a rank-``d`` correction, so this covers ``nn.Linear``/``nn.Conv*`` ``(out, in,
...)`` and neuraloperator's spectral ``(in, out, modes...)`` weights alike. The contexts ``c_e``
(``context_dim`` numbers, GEPS's 8) start at zero, so training starts from the base; GEPS adds no
regulariser (``l2c`` is available, 0 by default). At test time only ``c`` is fitted (:mod:`.context`).

``A`` and ``B`` are drawn with standard deviation ``sqrt(std(W))``, so a unit-norm context changes
every weight by about its own spread.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .context import ContextExpert


def _real(t: Tensor) -> Tensor:
    """Complex tensors as ``(..., 2)`` real pairs (safetensors and every optimiser handle those)."""
    return torch.view_as_real(t) if t.is_complex() else t


class GEPSExpert(ContextExpert):
    """Shared weights, low-rank factors ``A, B`` per weight (``B_b`` per bias) and contexts
    ``codes (E, d)``.

    Args:
        base: the expert whose architecture and weights start the shared weights.
        num_envs: training environments ``E``. context_dim: ``d``. residual: the expert predicts
            increments.
    """

    def __init__(self, base: nn.Module, num_envs: int, context_dim: int, residual: bool):
        super().__init__(base, residual)
        self.shared = nn.ParameterDict()
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        self.names, self.complex = {}, {}
        for name, p in base.named_parameters():
            key = name.replace(".", "__")  # ParameterDict keys may not hold dots
            self.names[key], self.complex[key] = name, p.is_complex()
            w = _real(p.detach())
            self.shared[key] = nn.Parameter(w.clone())
            spread = max(float(w.std()) if w.numel() > 1 else 0.0, 1e-3)
            if p.dim() >= 2:
                s = spread**0.5
                extra = w.shape[2:]  # remaining axes (plus (re, im) for complex weights)
                self.A[key] = nn.Parameter(s * torch.randn(p.shape[0], context_dim, *extra))
                self.B[key] = nn.Parameter(s * torch.randn(p.shape[1], context_dim, *extra))
            elif p.dim() == 1:
                self.B[key] = nn.Parameter(spread * torch.randn(context_dim, *w.shape))
        self.codes = nn.Parameter(torch.zeros(num_envs, context_dim))

    @property
    def contexts(self) -> Tensor:
        return self.codes

    def _factor(self, key: str, which: nn.ParameterDict) -> Tensor:
        f = which[key]
        return torch.view_as_complex(f) if self.complex[key] else f

    def weights(self, context: Tensor) -> dict[str, Tensor]:
        out = {}
        for key, w in self.shared.items():
            if key in self.A:
                a, b = self._factor(key, self.A), self._factor(key, self.B)
                c = context.to(a.dtype)
                delta = torch.einsum("ik...,k,ok...->io...", a, c, b)
                w = (torch.view_as_complex(w) if self.complex[key] else w) + delta
            elif key in self.B:
                w = w + torch.tensordot(context, self.B[key], dims=1)
                w = torch.view_as_complex(w) if self.complex[key] else w
            elif self.complex[key]:
                w = torch.view_as_complex(w)
            out[self.names[key]] = w
        return out

    def regularisation(self, cfg: Mapping[str, Any]) -> Tensor:
        return cfg.get("l2c", 0.0) * self.codes.pow(2).sum()
