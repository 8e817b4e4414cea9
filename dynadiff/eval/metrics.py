"""Field metrics: RMSE, NMSE and SSIM (Wang et al. 2004) on normalised fields."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rmse(pred: Tensor, true: Tensor) -> Tensor:
    """Root mean squared error over all but the first dim: ``(N, ...) -> (N,)``."""
    return (pred - true).pow(2).flatten(1).mean(1).sqrt()


def nmse(pred: Tensor, true: Tensor, eps: float = 1e-12) -> Tensor:
    """``||pred - true||^2 / ||true||^2`` per sample: ``(N, ...) -> (N,)``."""
    return (pred - true).pow(2).flatten(1).sum(1) / (true.pow(2).flatten(1).sum(1) + eps)


def _window(size: int, sigma: float | None, dtype, device) -> Tensor:
    if sigma is None:  # uniform
        w = torch.full((size,), 1.0 / size, dtype=dtype, device=device)
    else:
        x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
        w = torch.exp(-(x**2) / (2 * sigma**2))
        w = w / w.sum()
    return torch.outer(w, w)


def ssim(
    pred: Tensor,
    true: Tensor,
    win_size: int = 7,
    sigma: float | None = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Mean SSIM per sample of ``(N, C, H, W)`` fields, averaged over channels: ``-> (N,)``.

    Each (sample, channel) uses ``data_range = max(true) - min(true)``; the window (Gaussian with
    ``sigma``, or uniform when ``sigma is None``) is shrunk to fit small grids; the SSIM map is
    computed over valid positions only (no padding).
    """
    n, c, h, w = true.shape
    win = min(win_size, h, w)
    win -= (win + 1) % 2  # odd
    kernel = _window(win, sigma, true.dtype, true.device).expand(c, 1, win, win)
    rng = (true.flatten(2).amax(-1) - true.flatten(2).amin(-1)).clamp_min(1e-12)[
        ..., None, None
    ]  # (N, C, 1, 1)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2

    def filt(z):
        return F.conv2d(z, kernel, groups=c)

    mu_x, mu_y = filt(pred), filt(true)
    sxx = filt(pred * pred) - mu_x**2
    syy = filt(true * true) - mu_y**2
    sxy = filt(pred * true) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)
