"""How the zoo's latents are centred and scaled for diffusion (training.generator.latent_scaling)."""

import pytest
import torch

from dynadiff.model import latent_centre
from dynadiff.nn.prompter import monomials
from dynadiff.training.generator import latent_scaling


def _zoo(n=40, p=2, tokens=3, h=4, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(n, p, generator=g, dtype=torch.float64)
    coef = torch.randn(
        len(monomials(params[:1], 2)[0]), tokens, h, generator=g, dtype=torch.float64
    )
    latents = torch.einsum("nm,mth->nth", monomials(params, 2), coef)
    return (
        params,
        coef,
        latents + noise * torch.randn(latents.shape, generator=g, dtype=torch.float64),
    )


def test_degree_zero_is_the_zoos_mean_latent_per_coordinate():
    params, _, latents = _zoo(noise=0.1)
    mean, slopes, std = latent_scaling(latents, params, "per_coordinate", 0)
    assert slopes.shape == (0, 3, 4)
    assert torch.allclose(mean, latents.mean(0)) and torch.allclose(std, latents.std(0))
    assert torch.equal(latent_centre(mean, slopes, params, 0), mean.expand_as(latents))


def test_regression_mean_recovers_a_polynomial_in_the_parameters_exactly():
    """Latents that are a quadratic in the parameters are explained entirely by the degree-2 centre:
    its coefficients are the quadratic's, and what is left to diffuse is zero."""
    params, coef, latents = _zoo()
    mean, slopes, std = latent_scaling(latents, params, "per_coordinate", 2)
    assert slopes.shape == (5, 3, 4)  # p1, p2, p1^2, p1 p2, p2^2
    assert torch.allclose(mean, coef[0], atol=1e-6) and torch.allclose(slopes, coef[1:], atol=1e-6)
    assert (latents - latent_centre(mean, slopes, params, 2)).abs().max() < 1e-6
    # nothing left: the scale is the floor, 1e-3 of the latents' spread, not a division by zero
    assert torch.allclose(std, torch.full_like(std, 1e-3 * latents.std().item()))


def test_regression_residuals_are_orthogonal_to_the_features_and_scaled_to_unit_spread():
    """With noise, the least-squares residuals have zero mean and no linear trend in the
    parameters (normal equations), and the diffused latents have unit spread per coordinate."""
    params, _, latents = _zoo(noise=0.3)
    mean, slopes, std = latent_scaling(latents, params, "per_coordinate", 1)
    diffused = (latents - latent_centre(mean, slopes, params, 1)) / std
    x = monomials(params, 1)  # 1, p1, p2
    assert (x.T @ diffused.flatten(1)).abs().max() < 1e-6 * len(params)
    assert torch.allclose(diffused.std(0), torch.ones_like(std))
    # a degree that leaves the quadratic part unexplained leaves more to diffuse
    assert (std > latent_scaling(latents, params, "per_coordinate", 2)[2]).all()


def test_a_regression_mean_needs_per_coordinate_scaling():
    params, _, latents = _zoo()
    with pytest.raises(ValueError, match="per_coordinate"):
        latent_scaling(latents, params, "global", 1)
