"""Dynamics-informed prompter (paper section 3.3, appendix F).

Explicit branch (closed form, no parameters): for every frame, the spatial mean, variance, energy
``0.5 <f^2>`` and enstrophy ``0.5 <|grad f|^2>`` (periodic central differences, unit spacing), each
summed over channels; then, per statistic, the temporal mean and the least-squares trend (slope per
frame) over the ``L`` observed frames: 8 numbers. With a single frame (``L = 1``) the trend is 0.

Propagator (our addition, ``propagator=True``; ``False`` gives the paper's 8 numbers): the least-squares
one-step linear map of the channel vector, ``K = (sum x_{t+1} x_t^T)(sum x_t x_t^T)^{-1}`` pooled over
all points and observed frame pairs (a pooled dynamic-mode-decomposition estimate), reported as
``K - I`` (``C^2`` numbers; zeros when ``L = 1``). It does not depend on where the pattern sits or on
the initial condition, only on the dynamics: on the small Lambda-Omega preset a ridge regression of
beta from the 8 statistics alone reaches a held-out mean abs. error of 0.107 (the beta range is 0.5),
from the 8 statistics + ``K`` 0.008; the memorised GRU features do not generalise from 3 trajectories
per environment (docs/generator.md).

Tendency fit (our addition, opt-in: ``tendency_degree=d``, ``0`` leaves it out): the least-squares
coefficients of the one-step change ``x_{t+1} - x_t`` on the monomials of the channel vector up to
degree ``d``, the constant included, pooled the same way (``C * binomial(C + d, d)`` numbers). With
``d = 1`` it is the affine propagator: its constant takes the mean tendency of the observed window,
which the propagator (a linear fit through the origin of the normalised fields) has to fold into a
wrong matrix whenever the state sits away from the dataset mean, as an ODE's state does. On the small
Lotka-Volterra preset a held-out ridge regression reads delta from the 8 statistics + propagator with
a mean abs. error of 0.12 (guessing the mean: 0.14), adding the affine fit 0.04; on Lambda-Omega it
is as good as the propagator (beta 0.0065). Degree ``d`` makes the coefficients those of any
pointwise polynomial right-hand side of that degree (mass-action kinetics), but on a short window the
monomials are nearly collinear, so higher degrees are not read better from 10 frames.

Implicit branch: the 2D FFT of every frame, truncated to the lowest ``modes`` wavenumbers per axis,
real and imaginary parts stacked, projected and fed to a GRU; its final hidden state is the implicit
prompt. The prompt is the concatenation. For ODE systems (frames are state vectors) the explicit
statistics are taken over the state vector (enstrophy: half the mean squared change since the
previous frame, 0 for the first) and the raw states replace the FFT.

Variable observation length: batches carry ``lengths (B,)``; frames past a sample's length are ignored.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn


def frame_statistics(x: Tensor) -> Tensor:
    """``(B, L, C, H, W)`` or ``(B, L, D)`` -> ``(B, L, 4)``: mean, variance, energy, enstrophy."""
    if x.dim() == 5:
        dims = (-2, -1)
        mean = x.mean(dims).sum(-1)
        var = x.var(dims, unbiased=False).sum(-1)
        energy = 0.5 * x.pow(2).mean(dims).sum(-1)
        gx = 0.5 * (torch.roll(x, -1, -1) - torch.roll(x, 1, -1))
        gy = 0.5 * (torch.roll(x, -1, -2) - torch.roll(x, 1, -2))
        enstrophy = 0.5 * (gx.pow(2) + gy.pow(2)).mean(dims).sum(-1)
    else:
        mean, var, energy = x.mean(-1), x.var(-1, unbiased=False), 0.5 * x.pow(2).mean(-1)
        diff = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
        enstrophy = 0.5 * diff.pow(2).mean(-1)
    return torch.stack([mean, var, energy, enstrophy], dim=-1)


def temporal_mean_and_trend(s: Tensor, lengths: Tensor) -> Tensor:
    """``s (B, L, K)`` over the first ``lengths[b]`` frames -> ``(B, 2K)`` [means, least-squares slopes]."""
    b, n, _ = s.shape
    t = torch.arange(n, device=s.device, dtype=s.dtype).expand(b, n)
    mask = (t < lengths[:, None]).to(s.dtype)  # (B, L)
    n = mask.sum(1, keepdim=True)
    t_mean = (t * mask).sum(1, keepdim=True) / n
    s_mean = (s * mask[..., None]).sum(1) / n  # (B, K)
    dt = (t - t_mean) * mask
    denom = dt.pow(2).sum(1, keepdim=True)  # 0 when L = 1
    slope = (dt[..., None] * (s - s_mean[:, None])).sum(1) / denom.clamp_min(1e-12)
    slope = torch.where(denom > 0, slope, torch.zeros_like(slope))
    return torch.cat([s_mean, slope], dim=-1)


def propagator(x: Tensor, lengths: Tensor, ridge: float = 1e-6) -> Tensor:
    """Least-squares one-step channel propagator minus identity over the first ``lengths[b]`` frames.

    ``(B, L, C, H, W)`` or ``(B, L, D)`` (ODE states: ``D`` channels, one point) -> ``(B, C * C)``;
    zeros for samples with a single frame. ``ridge`` (relative to the mean channel power) keeps
    ``sum x_t x_t^T`` invertible when the frames do not span every channel direction.
    """
    b, n, c = x.shape[:3]
    pairs = (torch.arange(n - 1, device=x.device) < (lengths[:, None] - 1)).to(x.dtype)  # (B, L-1)
    shape = (b, n - 1) + (1,) * (x.dim() - 2)
    x0 = (x[:, :-1] * pairs.view(shape)).transpose(1, 2).reshape(b, c, -1)  # (B, C, (L-1) * points)
    x1 = (x[:, 1:] * pairs.view(shape)).transpose(1, 2).reshape(b, c, -1)
    gram = x0 @ x0.transpose(1, 2)  # (B, C, C)
    eye = torch.eye(c, device=x.device, dtype=x.dtype)
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)[:, None, None]
    cross = x1 @ x0.transpose(1, 2)
    k = torch.linalg.solve(gram + ridge * scale * eye, cross.transpose(1, 2)).transpose(
        1, 2
    )  # cross @ gram^-1
    return torch.where((lengths > 1)[:, None], (k - eye).flatten(1), torch.zeros_like(k.flatten(1)))


def monomials(x: Tensor, degree: int) -> Tensor:
    """``(..., C) -> (..., M)``: every monomial of the ``C`` channels of degree ``0..degree``, the
    constant first, then by degree (``M = binomial(C + degree, degree)``)."""
    cols = [torch.ones_like(x[..., :1])]
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(x.shape[-1]), d):
            cols.append(torch.stack([x[..., i] for i in combo], -1).prod(-1, keepdim=True))
    return torch.cat(cols, -1)


def tendency_fit(x: Tensor, lengths: Tensor, degree: int, ridge: float = 1e-6) -> Tensor:
    """Least-squares coefficients of the one-step change ``x_{t+1} - x_t`` of every channel on the
    monomials of the channel vector ``x_t`` up to ``degree`` (:func:`monomials`), pooled over all points
    and the observed frame pairs of the first ``lengths[b]`` frames.

    For dynamics whose right-hand side is a pointwise polynomial of that degree in the state
    (mass-action kinetics, Lotka-Volterra, Lorenz-type ODEs, reaction terms of reaction-diffusion
    systems) these coefficients are, up to the time step's truncation error, the equation's own
    coefficients, linear in its rate constants; normalising the fields only mixes coefficients
    linearly, because the constant is among the monomials.

    ``(B, L, C, H, W)`` or ``(B, L, D)`` (ODE states: ``D`` channels, one point) -> ``(B, C * M)``;
    zeros for samples with a single frame. ``ridge`` is relative to the mean diagonal of the Gram matrix.
    """
    b, n = x.shape[:2]
    pts = (x.movedim(2, -1) if x.dim() == 5 else x[..., None, :]).reshape(b, n, -1, x.shape[2])
    pairs = (torch.arange(n - 1, device=x.device) < (lengths[:, None] - 1)).to(x.dtype)
    w = pairs[:, :, None, None]  # (B, L-1, 1, 1)
    phi = (monomials(pts[:, :-1], degree) * w).flatten(1, 2)  # (B, (L-1) P, M)
    dx = ((pts[:, 1:] - pts[:, :-1]) * w).flatten(1, 2)  # (B, (L-1) P, C)
    gram = phi.transpose(1, 2) @ phi  # (B, M, M)
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)[:, None, None]
    eye = torch.eye(gram.shape[-1], device=x.device, dtype=x.dtype)
    coef = torch.linalg.solve(gram + ridge * scale * eye, phi.transpose(1, 2) @ dx)  # (B, M, C)
    coef = coef.transpose(1, 2).flatten(1)
    return torch.where((lengths > 1)[:, None], coef, torch.zeros_like(coef))


def explicit_statistics(
    obs: Tensor, lengths: Tensor, with_propagator: bool = True, tendency_degree: int = 0
) -> Tensor:
    """``(B, L, ...) -> (B, F)``: the 8 statistics' temporal means and trends, then (if asked) the
    propagator's ``C^2`` numbers and the tendency fit's ``C * M`` coefficients."""
    parts = [temporal_mean_and_trend(frame_statistics(obs), lengths)]
    if with_propagator:
        parts.append(propagator(obs, lengths))
    if tendency_degree:
        parts.append(tendency_fit(obs, lengths, tendency_degree))
    return torch.cat(parts, -1)


def ridge_fit(x: Tensor, y: Tensor, ridge: float = 1e-3) -> Tensor:
    """Least squares ``y ~ [x, 1] @ coef`` with the penalty ``ridge * n * |slopes|^2`` (the intercept
    is not penalised): ``x (n, F)``, ``y (n, P)`` -> ``coef (F + 1, P)``."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
    reg = ridge * len(a) * torch.eye(a.shape[1], dtype=x.dtype, device=x.device)
    reg[-1, -1] = 0.0
    return torch.linalg.solve(a.T @ a + reg, a.T @ y)


def ridge_predict(x: Tensor, coef: Tensor) -> Tensor:
    """``x (n, F)``, ``coef (F + 1, P)`` from :func:`ridge_fit` -> ``(n, P)``."""
    return x @ coef[:-1] + coef[-1]


def spectral_features(x: Tensor, modes: int) -> Tensor:
    """``(B, L, C, H, W)`` -> ``(B, L, C * 2 * (2 modes) * modes)``: lowest Fourier modes, (re, im) stacked."""
    f = torch.fft.rfft2(x, norm="ortho")
    ky = torch.cat([torch.arange(modes), torch.arange(-modes, 0)]) % x.shape[-2]
    f = f[..., ky, :modes]  # (B, L, C, 2m, m)
    return torch.cat([f.real, f.imag], dim=-1).flatten(2)


class DynamicsPrompter(nn.Module):
    """``observations (B, L, ...) , lengths (B,) -> prompt (B, explicit_dim + hidden)``.

    Args:
        frame_shape: ``(C, H, W)`` for fields or ``(D,)`` for ODE states.
        hidden: GRU width (the implicit prompt size).
        modes: Fourier modes kept per axis.
        num_env_params: size of the auxiliary regression head (``0`` disables it).
        propagator: append the ``C^2`` propagator statistics to the 8 explicit ones (``explicit_dim``).
        tendency_degree: append the ``C * M`` coefficients of :func:`tendency_fit` of this degree
            (``0``: none).
        env_estimate: append a closed-form estimate of this many environment parameters (``0``:
            none): a ridge regression of the parameters on the standardised explicit statistics,
            fitted by :meth:`fit_statistics` on full-length training windows.

    The explicit statistics are standardised with the buffers ``stat_mean``/``stat_std``, which the
    trainer sets from the training observations (:meth:`fit_statistics`).
    """

    def __init__(
        self,
        frame_shape: tuple[int, ...],
        hidden: int = 64,
        modes: int = 8,
        num_env_params: int = 0,
        propagator: bool = True,
        tendency_degree: int = 0,
        env_estimate: int = 0,
    ):
        super().__init__()
        self.frame_shape = tuple(frame_shape)
        self.propagator = propagator
        if tendency_degree < 0:
            raise ValueError(f"tendency_degree must be >= 0, got {tendency_degree}")
        self.tendency_degree = tendency_degree
        self.field = len(self.frame_shape) == 3
        if self.field:
            c, h, w = self.frame_shape
            self.modes = min(modes, h // 2, w // 2 + 1)
            in_dim = c * 2 * (2 * self.modes) * self.modes
        else:
            self.modes, in_dim = 0, self.frame_shape[0]
        self.input = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        c = self.frame_shape[0]
        self.explicit_dim = (
            8
            + (c**2 if propagator else 0)
            + (c * math.comb(c + tendency_degree, tendency_degree) if tendency_degree else 0)
        )
        self.register_buffer("stat_mean", torch.zeros(self.explicit_dim))
        self.register_buffer("stat_std", torch.ones(self.explicit_dim))
        self.env_estimate = env_estimate
        if env_estimate:  # only then: models saved without it load unchanged
            self.register_buffer("estimate_coef", torch.zeros(self.explicit_dim + 1, env_estimate))
        self.prompt_dim = self.explicit_dim + env_estimate + hidden
        self.aux = nn.Linear(self.prompt_dim, num_env_params) if num_env_params else None

    @torch.no_grad()
    def fit_statistics(self, obs: Tensor, params: Tensor | None = None) -> None:
        """Fit the closed-form parts on full-length training windows ``obs (N, L, ...)``: the
        standardisation of the explicit statistics and, with ``env_estimate``, the ridge regression of
        the windows' environment parameters ``params (N, P)`` on them (in the scale they are given:
        the trainer standardises them as the auxiliary head's targets, so both read the same units)."""
        e = self.explicit(obs, torch.full((obs.shape[0],), obs.shape[1], device=obs.device))
        self.stat_mean.copy_(e.mean(0))
        self.stat_std.copy_(e.std(0).clamp_min(1e-6) if e.shape[0] > 1 else torch.ones_like(e[0]))
        if self.env_estimate:
            if params is None or params.shape != (len(obs), self.env_estimate):
                raise ValueError(
                    f"env_estimate={self.env_estimate} needs the parameters of every window, "
                    f"({len(obs)}, {self.env_estimate}); got "
                    f"{None if params is None else tuple(params.shape)}"
                )
            x = (e - self.stat_mean) / self.stat_std
            self.estimate_coef.copy_(ridge_fit(x.double(), params.double()).to(e.dtype))

    def explicit(self, obs: Tensor, lengths: Tensor) -> Tensor:
        """The closed-form statistics, ``(B, explicit_dim)`` (unscaled)."""
        return explicit_statistics(obs, lengths, self.propagator, self.tendency_degree)

    def forward(self, obs: Tensor, lengths: Tensor | None = None) -> Tensor:
        b, n = obs.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), n, device=obs.device)
        explicit = (self.explicit(obs, lengths) - self.stat_mean) / self.stat_std
        if self.env_estimate:
            explicit = torch.cat([explicit, ridge_predict(explicit, self.estimate_coef)], -1)
        seq = spectral_features(obs, self.modes) if self.field else obs
        packed = nn.utils.rnn.pack_padded_sequence(
            self.input(seq), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, h = self.gru(packed)
        return torch.cat([explicit, h[-1]], dim=-1)

    def read_environment(self, prompt: Tensor, source: str) -> Tensor:
        """The environment parameters ``(B, P)`` read from ``prompt (B, prompt_dim)`` by the closed-form
        ``estimate`` (its part of the prompt) or the auxiliary ``head``."""
        if source == "head":
            return self.regress(prompt)
        if source != "estimate":
            raise ValueError(f"source must be 'estimate' or 'head', got {source!r}")
        if not self.env_estimate:
            raise RuntimeError("this prompter has no closed-form estimate (env_estimate=0)")
        return prompt[:, self.explicit_dim : self.explicit_dim + self.env_estimate]

    def regress(self, prompt: Tensor) -> Tensor:
        """Auxiliary environment-parameter prediction ``(B, P)``."""
        if self.aux is None:
            raise RuntimeError("this prompter has no auxiliary head (num_env_params=0)")
        return self.aux(prompt)
