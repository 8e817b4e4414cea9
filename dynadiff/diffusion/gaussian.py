"""Gaussian diffusion (DDPM training, DDPM and DDIM sampling), independent of any network.

The process takes any ``model(x_t, t, **kwargs)`` with the shape of ``x_t`` predicting, by
``prediction``, the noise (``"eps"``, DDPM's choice), the clean sample (``"x0"``) or the velocity
``v = sqrt(abar) eps - sqrt(1 - abar) x_0`` (``"v"``, Salimans & Ho 2022). The predicted clean sample
is **never clipped**: latents are not images in [-1, 1].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .schedules import make_betas

Model = Callable[..., Tensor]


def _extract(a: Tensor, t: Tensor, ndim: int) -> Tensor:
    """``a[t]`` shaped ``(B, 1, ..., 1)`` to broadcast against an ``ndim`` tensor."""
    return a.to(t.device)[t].float().view(-1, *([1] * (ndim - 1)))


class GaussianDiffusion:
    """Epsilon-prediction diffusion with ``num_steps`` training steps.

    Args:
        num_steps: T.
        schedule: ``"linear"`` or ``"cosine"``; ``schedule_kwargs`` go to the schedule.
    """

    def __init__(
        self,
        num_steps: int = 1000,
        schedule: str = "linear",
        prediction: str = "eps",
        **schedule_kwargs,
    ):
        if prediction not in ("eps", "x0", "v"):
            raise ValueError(f"prediction must be 'eps', 'x0' or 'v', got {prediction!r}")
        self.num_steps, self.prediction = num_steps, prediction
        self.betas = make_betas(schedule, num_steps, **schedule_kwargs)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat(
            [torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]]
        )
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1 - self.alphas_cumprod).sqrt()
        # posterior q(x_{t-1} | x_t, x_0)
        self.posterior_variance = (
            self.betas * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        )
        self.posterior_log_variance = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef1 = (
            self.betas * self.alphas_cumprod_prev.sqrt() / (1 - self.alphas_cumprod)
        )
        self.posterior_mean_coef2 = (
            (1 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)
        )

    # ------------------------------------------------------------------ training
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``."""
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0.dim()) * x0
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.dim()) * noise
        )

    def training_loss(
        self,
        model: Model,
        x0: Tensor,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        **model_kwargs,
    ) -> Tensor:
        """Per-sample MSE between the model output and its target (noise, x_0 or v): ``(B,)``."""
        # Draws happen where the generator lives (a CPU generator keeps runs reproducible on any device).
        if t is None:
            t = torch.randint(0, self.num_steps, (x0.shape[0],), generator=generator).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, dtype=x0.dtype, generator=generator).to(x0.device)
        out = model(self.q_sample(x0, t, noise), t, **model_kwargs)
        if self.prediction == "eps":
            target = noise
        elif self.prediction == "x0":
            target = x0
        else:
            target = (
                _extract(self.sqrt_alphas_cumprod, t, x0.dim()) * noise
                - _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.dim()) * x0
            )
        return (out - target).pow(2).flatten(1).mean(1)

    def x0_and_eps(self, x_t: Tensor, t: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
        """Clean sample and noise implied by a model output of this parameterisation."""
        a = _extract(self.sqrt_alphas_cumprod, t, x_t.dim())
        s = _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.dim())
        if self.prediction == "eps":
            return (x_t - s * out) / a, out
        if self.prediction == "x0":
            return out, (x_t - a * out) / s
        return a * x_t - s * out, s * x_t + a * out

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def ddpm_sample(
        self,
        model: Model,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device=None,
        **model_kwargs,
    ) -> Tensor:
        """Ancestral sampling over all ``num_steps`` steps."""
        x = torch.randn(shape, generator=generator).to(device)
        for i in reversed(range(self.num_steps)):
            t = torch.full((shape[0],), i, device=x.device, dtype=torch.long)
            x0, _ = self.x0_and_eps(x, t, model(x, t, **model_kwargs))
            mean = (
                _extract(self.posterior_mean_coef1, t, x.dim()) * x0
                + _extract(self.posterior_mean_coef2, t, x.dim()) * x
            )
            if i > 0:
                noise = torch.randn(shape, generator=generator).to(x.device)
                x = mean + (0.5 * _extract(self.posterior_log_variance, t, x.dim())).exp() * noise
            else:
                x = mean
        return x

    @torch.no_grad()
    def ddim_sample(
        self,
        model: Model,
        shape: tuple[int, ...],
        *,
        steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        device=None,
        noise: Tensor | None = None,
        **model_kwargs,
    ) -> Tensor:
        """DDIM (Song et al. 2021) on ``steps`` evenly spaced timesteps; ``eta = 0`` is deterministic."""
        if not 1 <= steps <= self.num_steps:
            raise ValueError(f"steps must be in [1, {self.num_steps}], got {steps}")
        ts = torch.linspace(self.num_steps - 1, 0, steps).round().long().tolist()
        x = noise if noise is not None else torch.randn(shape, generator=generator).to(device)
        abar = self.alphas_cumprod
        for k, i in enumerate(ts):
            t = torch.full((shape[0],), i, device=x.device, dtype=torch.long)
            x0, eps = self.x0_and_eps(x, t, model(x, t, **model_kwargs))
            a_t = abar[i].item()
            a_prev = abar[ts[k + 1]].item() if k + 1 < len(ts) else 1.0
            sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
            x = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
            if sigma > 0:
                x = x + sigma * torch.randn(shape, generator=generator).to(x.device)
        return x


def classifier_free_guidance(model: Model, scale: float, null_kwargs: dict) -> Model:
    """``eps = eps_uncond + scale (eps_cond - eps_uncond)``; ``scale = 1`` is plain conditioning."""

    def guided(x: Tensor, t: Tensor, **kwargs) -> Tensor:
        if scale == 1.0:
            return model(x, t, **kwargs)
        cond = model(x, t, **kwargs)
        uncond = model(x, t, **{**kwargs, **null_kwargs})
        return uncond + scale * (cond - uncond)

    return guided
