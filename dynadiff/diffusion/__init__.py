"""Gaussian diffusion process and noise schedules (never imports dynadiff.nn)."""

from .gaussian import GaussianDiffusion, classifier_free_guidance
from .schedules import cosine_betas, linear_betas, make_betas

__all__ = [
    "GaussianDiffusion",
    "classifier_free_guidance",
    "linear_betas",
    "cosine_betas",
    "make_betas",
]
