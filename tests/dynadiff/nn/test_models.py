"""Generator networks and the diffusion process: properties that catch real bugs."""

import math

import pytest
import torch

from dynadiff.diffusion import GaussianDiffusion, linear_betas
from dynadiff.nn.dit import LatentDiT
from dynadiff.nn.prompter import (
    DynamicsPrompter,
    frame_statistics,
    monomials,
    propagator,
    spectral_features,
    temporal_mean_and_trend,
    tendency_fit,
)
from dynadiff.nn.vae import (
    WeightVAE,
    default_token_size,
    kl_divergence,
    reconstruction_error,
    token_counts,
)
from weightgraph.edges import dense

NODE_TYPES = [("a", 5, 7), ("b", 3, 11), ("c", 2, 4)]
EDGES = {("a", "to", "b"): dense(5, 3), ("b", "to", "c"): dense(3, 2)}


def _features(b=4):
    return {k: torch.randn(b, n, d) for k, n, d in NODE_TYPES}


def test_adaln_zero_blocks_are_identity_and_output_is_zero_at_init():
    torch.manual_seed(0)
    dit = LatentDiT([5, 3, 2], latent_dim=6, prompt_dim=9, hidden=32, depth=3, heads=4)
    x, c = torch.randn(2, 10, 32), torch.randn(2, 32)
    for blk in dit.blocks:
        assert torch.equal(blk(x, c), x)
    out = dit(torch.randn(2, 10, 6), torch.tensor([3, 999]), torch.randn(2, 9))
    assert out.shape == (2, 10, 6) and torch.equal(out, torch.zeros_like(out))


def test_linear_schedule_matches_hand_computed_values():
    b = linear_betas(1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert b[499].item() == pytest.approx(1e-4 + 499 * (0.02 - 1e-4) / 999, rel=1e-12)
    b100 = linear_betas(100)  # rescaled by 1000 / T
    assert b100[0].item() == pytest.approx(1e-3) and b100[-1].item() == pytest.approx(0.2)
    assert linear_betas(100, rescale=False)[-1].item() == pytest.approx(0.02)
    d = GaussianDiffusion(1000)
    assert d.alphas_cumprod[1].item() == pytest.approx((1 - 1e-4) * (1 - b[1].item()), rel=1e-12)


def _oracle(diffusion, x0):
    """The ideal noise predictor for a single known sample x0."""

    def model(x, t, **_):
        a = diffusion.sqrt_alphas_cumprod[t].float().view(-1, 1, 1)
        s = diffusion.sqrt_one_minus_alphas_cumprod[t].float().view(-1, 1, 1)
        return (x - a * x0) / s

    return model


def test_ddim_eta0_is_deterministic_and_recovers_unclipped_samples():
    d = GaussianDiffusion(200, "cosine")
    x0 = 5 * torch.randn(1, 4, 3)  # far outside [-1, 1]: any clipping would show
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = d.ddim_sample(_oracle(d, x0), (1, 4, 3), steps=20, generator=g(0))
    b = d.ddim_sample(_oracle(d, x0), (1, 4, 3), steps=20, generator=g(0))
    assert torch.equal(a, b)
    assert torch.allclose(a, x0, atol=1e-4)
    # with an imperfect model the result depends on the noise: eta = 0 only on the initial noise
    model = lambda x, t: 0.5 * x  # noqa: E731
    noise = torch.randn(1, 4, 3)
    det = [d.ddim_sample(model, (1, 4, 3), steps=20, noise=noise, generator=g(s)) for s in (1, 2)]
    assert torch.equal(det[0], det[1])
    sto = [
        d.ddim_sample(model, (1, 4, 3), steps=20, eta=1.0, noise=noise, generator=g(s))
        for s in (1, 2)
    ]
    assert not torch.allclose(sto[0], sto[1])


def test_ddpm_sampler_with_oracle_recovers_the_sample():
    d = GaussianDiffusion(100)
    x0 = 3 * torch.randn(1, 5, 2)
    out = d.ddpm_sample(_oracle(d, x0), (1, 5, 2), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-3)


def test_prompter_statistics_hand_computed():
    w, k = 16, 2 * math.pi / 16
    x = torch.arange(w, dtype=torch.float64)
    a0, slope, amp = 0.3, 0.05, 2.0
    frames = torch.stack(
        [(a0 + slope * t) + amp * torch.sin(k * x).expand(8, w) for t in range(5)]
    )  # (5, 8, 16)
    obs = frames[None, :, None]  # (1, L=5, C=1, 8, 16)
    s = frame_statistics(obs)[0]
    mean_t = a0 + slope * torch.arange(5, dtype=torch.float64)
    assert torch.allclose(s[:, 0], mean_t)
    assert torch.allclose(s[:, 1], torch.full((5,), amp**2 / 2, dtype=torch.float64))
    assert torch.allclose(s[:, 2], 0.5 * (mean_t**2 + amp**2 / 2))
    assert torch.allclose(
        s[:, 3], torch.full((5,), 0.5 * amp**2 * math.sin(k) ** 2 / 2, dtype=torch.float64)
    )
    e = temporal_mean_and_trend(s[None], torch.tensor([5]))[0]
    assert e[0].item() == pytest.approx(a0 + 2 * slope) and e[4].item() == pytest.approx(slope)
    assert e[5].item() == pytest.approx(0.0, abs=1e-12)  # variance does not change
    one = temporal_mean_and_trend(s[None], torch.tensor([1]))[0]  # L = 1: trend defined as 0
    assert torch.equal(one[4:], torch.zeros(4, dtype=torch.float64)) and one[
        0
    ].item() == pytest.approx(a0)


def test_fft_branch_separates_frequencies():
    x = torch.arange(16.0)
    f2 = torch.sin(2 * math.pi * 2 * x / 16).expand(16, 16)
    f3 = torch.sin(2 * math.pi * 3 * x / 16).expand(16, 16)
    obs = torch.stack([f2, f3])[:, None, None]  # (2, 1, 1, 16, 16)
    feats = spectral_features(obs, 4).view(2, 1, 2 * 4, 2 * 4)  # (B, C, ky, [re kx | im kx])
    energy = feats.pow(2).sum((1, 2))  # per (re/im, kx) column
    assert energy[0].argmax() % 4 == 2 and energy[1].argmax() % 4 == 3
    torch.manual_seed(0)
    p = DynamicsPrompter((1, 16, 16), hidden=16, modes=4)
    out = p(obs.float().repeat(1, 3, 1, 1, 1))
    implicit = out[:, p.explicit_dim :]
    assert (implicit[0] - implicit[1]).abs().max() > 1e-3


def test_prompter_variable_length_ignores_frames_past_the_length():
    torch.manual_seed(0)
    p = DynamicsPrompter((2, 16, 16), hidden=8, modes=4, num_env_params=1)
    obs = torch.randn(3, 6, 2, 16, 16)
    lengths = torch.tensor([6, 3, 1])
    ref = p(obs, lengths)
    junk = obs.clone()
    junk[1, 3:] = 100.0
    junk[2, 1:] = -7.0
    assert torch.allclose(p(junk, lengths), ref, atol=1e-6)
    assert p.regress(ref).shape == (3, 1)


def test_propagator_recovers_a_linear_map_and_ignores_position():
    a = torch.tensor([[0.9, -0.2], [0.3, 1.05]], dtype=torch.float64)
    frames = [torch.randn(2, 2, 8, 8, dtype=torch.float64)]
    for _ in range(4):
        frames.append(torch.einsum("ij,bjhw->bihw", a, frames[-1]))
    x = torch.stack(frames, 1)  # (B, L, C, H, W) with x_{t+1} = a x_t
    lengths = torch.tensor([5, 2])
    expected = (a - torch.eye(2)).flatten()
    k = propagator(x, lengths)
    assert torch.allclose(k, expected.expand(2, 4), atol=1e-5)  # ridge 1e-6 biases it by ~1e-6
    shifted = torch.roll(x, shifts=(3, -2), dims=(-2, -1))  # where the pattern sits does not matter
    assert torch.allclose(propagator(shifted, lengths), k, atol=1e-12)
    assert torch.equal(propagator(x, torch.tensor([1, 1])), torch.zeros(2, 4, dtype=torch.float64))
    p = DynamicsPrompter((2, 8, 8), hidden=4, modes=2)
    assert p.explicit_dim == 12 and p.prompt_dim == 16
    assert DynamicsPrompter((2, 8, 8), hidden=4, modes=2, propagator=False).explicit_dim == 8


def _euler_lotka_volterra(beta, delta, x0, steps, dt):
    """States ``(B, steps + 1, 2)`` of forward-Euler Lotka-Volterra (alpha = gamma = 0.5)."""
    xs = [x0]
    for _ in range(steps):
        x, y = xs[-1].unbind(-1)
        xs.append(xs[-1] + dt * torch.stack([0.5 * x - beta * x * y, delta * x * y - 0.5 * y], -1))
    return torch.stack(xs, 1)


def test_monomials_are_every_product_up_to_the_degree():
    x = torch.tensor([[2.0, 3.0]])
    assert monomials(x, 2).tolist() == [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]  # 1, a, b, a^2, ab, b^2
    assert monomials(torch.rand(4, 3), 3).shape == (4, 20)  # binomial(3 + 3, 3)


def test_tendency_fit_recovers_the_coefficients_of_a_polynomial_ode():
    """Euler steps of Lotka-Volterra are exactly quadratic in the state: degree 2 reads the equation's
    coefficients times dt (x' = 0.5 x - beta x y, y' = delta x y - 0.5 y), so beta and delta are linear
    in the statistic. A third of an orbit keeps the 6 monomials well apart (on a short arc they are
    nearly collinear, and the fit is only as good as that conditioning)."""
    torch.manual_seed(0)
    beta, delta, dt = 0.7, 0.9, 0.1
    x = _euler_lotka_volterra(beta, delta, 1 + 2 * torch.rand(1, 2, dtype=torch.float64), 39, dt)
    coef = tendency_fit(x, torch.tensor([40]), degree=2, ridge=0.0).view(2, 6)
    # columns: 1, x, y, x^2, xy, y^2
    expected = torch.tensor(
        [[0, 0.5, 0, 0, -beta, 0], [0, 0, -0.5, 0, delta, 0]], dtype=torch.float64
    )
    assert torch.allclose(coef / dt, expected, atol=1e-6)
    # the fit is over the observed pairs only, and a single frame gives zeros
    padded = torch.cat([x, torch.full_like(x[:, :3], 1e3)], 1)
    assert torch.allclose(
        tendency_fit(padded, torch.tensor([40]), 2, ridge=0.0).view(2, 6), coef, atol=1e-9
    )
    assert torch.equal(tendency_fit(x, torch.tensor([1]), 2), torch.zeros(1, 12, dtype=x.dtype))


def test_affine_tendency_fit_is_exact_where_the_linear_propagator_is_not():
    """x_{t+1} = a x_t + b: the constant of the affine fit takes b, which the propagator (a linear fit
    through the origin) has to fold into a wrong matrix; for fields, position does not matter."""
    a = torch.tensor([[0.9, -0.2], [0.3, 0.8]], dtype=torch.float64)
    b = torch.tensor([0.5, -0.3], dtype=torch.float64)
    frames = [torch.randn(1, 2, 6, 6, dtype=torch.float64)]
    for _ in range(4):
        frames.append(torch.einsum("ij,bjhw->bihw", a, frames[-1]) + b[None, :, None, None])
    x, lengths = torch.stack(frames, 1), torch.tensor([5])
    coef = tendency_fit(x, lengths, degree=1, ridge=0.0).view(2, 3)  # columns: 1, x_0, x_1
    assert torch.allclose(coef[:, 0], b, atol=1e-9)
    assert torch.allclose(coef[:, 1:], a - torch.eye(2, dtype=a.dtype), atol=1e-9)
    assert not torch.allclose(propagator(x, lengths).view(2, 2), a - torch.eye(2), atol=1e-2)
    shifted = torch.roll(x, shifts=(2, -1), dims=(-2, -1))
    assert torch.allclose(tendency_fit(shifted, lengths, 1, ridge=0.0), coef.flatten()[None])


def test_prompter_explicit_dim_counts_the_tendency_coefficients():
    base = DynamicsPrompter((2, 8, 8), hidden=4, modes=2)
    p = DynamicsPrompter((2, 8, 8), hidden=4, modes=2, tendency_degree=2)
    assert p.explicit_dim == base.explicit_dim + 2 * 6
    obs = torch.randn(3, 5, 2, 8, 8)
    assert p(obs).shape == (3, p.prompt_dim)
    # degree 0 is the prompt without the statistic, with the same initial weights
    torch.manual_seed(0)
    a = DynamicsPrompter((2, 8, 8), hidden=4, modes=2, tendency_degree=0)
    torch.manual_seed(0)
    b = DynamicsPrompter((2, 8, 8), hidden=4, modes=2)
    assert torch.equal(a(obs), b(obs))
    with pytest.raises(ValueError, match="tendency_degree"):
        DynamicsPrompter((2,), tendency_degree=-1)


def test_env_estimate_reads_a_rate_linear_in_the_tendency():
    """Windows of x_{t+1} = (1 + r) x_t: the affine tendency's slope is r exactly, so the closed-form
    estimate recovers r (standardised) on new windows, whatever the initial state."""
    torch.manual_seed(0)

    def windows(rates):
        x0 = 0.5 + torch.rand(len(rates), 1, 2)  # (N, 1, D)
        steps = (1 + rates)[:, None, None] ** torch.arange(10.0)[None, :, None]
        return x0 * steps  # (N, 10, 2)

    rates = torch.linspace(-0.05, 0.05, 40)
    p = DynamicsPrompter((2,), hidden=4, tendency_degree=1, env_estimate=1)
    p.fit_statistics(windows(rates), rates[:, None] / 0.05)  # in the units it is given
    new = torch.tensor([-0.04, 0.01, 0.03])
    estimate = p.read_environment(p(windows(new)), "estimate")[
        :, 0
    ]  # follows the explicit statistics
    assert torch.allclose(estimate, new / 0.05, atol=0.05)
    assert p.prompt_dim == p.explicit_dim + 1 + 4
    with pytest.raises(ValueError, match="env_estimate=1 needs the parameters"):
        p.fit_statistics(windows(rates))
    assert "estimate_coef" not in DynamicsPrompter((2,), hidden=4).state_dict()


def test_prompter_for_ode_states():
    p = DynamicsPrompter((2,), hidden=8)
    assert p(torch.rand(4, 10, 2)).shape == (4, p.prompt_dim)


def _all_params_get_gradients(module, loss):
    module.zero_grad()
    loss.backward()
    unused = [n for n, prm in module.named_parameters() if prm.grad is None]
    assert not unused, f"unused parameters: {unused}"


def test_no_unused_parameters():
    torch.manual_seed(0)
    vae = WeightVAE(NODE_TYPES, internal_dim=16, latent_dim=4, num_heads=2, num_layers=1)
    feats = _features()
    rec, mu, logvar = vae(feats)
    _all_params_get_gradients(
        vae, (reconstruction_error(rec, feats) + kl_divergence(mu, logvar)).mean()
    )
    dit = LatentDiT([5, 3, 2], latent_dim=4, prompt_dim=9, hidden=16, depth=2, heads=2)
    out = dit(
        torch.randn(4, 10, 4),
        torch.randint(0, 100, (4,)),
        torch.randn(4, 9),
        drop_prompt=torch.tensor([True, False, False, True]),
    )
    _all_params_get_gradients(dit, out.square().mean() + sum(p.square().sum() for p in ()))
    prompter = DynamicsPrompter((2, 16, 16), hidden=8, modes=4, num_env_params=2)
    prompt = prompter(torch.randn(4, 5, 2, 16, 16))
    _all_params_get_gradients(prompter, prompter.regress(prompt).square().mean())


def test_vae_shapes_and_per_node_latents():
    vae = WeightVAE(NODE_TYPES, internal_dim=16, latent_dim=4, num_heads=2, num_layers=1)
    mu, logvar = vae.encode(_features(3))
    assert mu.shape == logvar.shape == (3, 10, 4)  # one latent per node, no pooling
    rec = vae.decode(mu)
    assert {k: tuple(v.shape) for k, v in rec.items()} == {k: (3, n, d) for k, n, d in NODE_TYPES}


def test_sequence_tokens_are_hand_counted():
    # 35 + 33 + 8 values over 10 nodes: 8 values per token -> 5 + 5 + 1 tokens, none straddling layers
    assert default_token_size(NODE_TYPES) == 8
    assert token_counts(NODE_TYPES, "sequence") == [5, 5, 1]
    assert token_counts(NODE_TYPES, "sequence", token_size=16) == [3, 3, 1]
    assert token_counts(NODE_TYPES, "graph") == token_counts(NODE_TYPES, "message_passing")
    with pytest.raises(ValueError, match="representation"):
        token_counts(NODE_TYPES, "tokens")


@pytest.mark.parametrize("representation", ["graph", "sequence", "message_passing"])
def test_every_representation_has_per_token_latents_and_trains(representation):
    """Shapes, every parameter used, and 60 Adam steps shrink the reconstruction error 5x."""
    torch.manual_seed(0)
    vae = WeightVAE(NODE_TYPES, 32, 4, 2, 1, representation=representation, edges=EDGES)
    feats = _features(8)
    mu, logvar = vae.encode(feats)
    assert mu.shape == logvar.shape == (8, vae.num_tokens, 4)
    assert vae.num_tokens == sum(token_counts(NODE_TYPES, representation))
    rec = vae.decode(mu)
    assert {k: tuple(v.shape) for k, v in rec.items()} == {k: (8, n, d) for k, n, d in NODE_TYPES}
    _all_params_get_gradients(vae, reconstruction_error(rec, feats).mean())
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    first = reconstruction_error(vae(feats, sample=False)[0], feats).mean().item()
    for _ in range(60):
        opt.zero_grad()
        reconstruction_error(vae(feats, sample=False)[0], feats).mean().backward()
        opt.step()
    last = reconstruction_error(vae(feats, sample=False)[0], feats).mean().item()
    assert last < first / 5, (first, last)


def test_message_passing_moves_information_only_along_edges_and_within_a_graph():
    """Without global attention, one block changes a node's token only through its graph neighbours
    (edges read both ways), and never across the graphs of a batch."""
    torch.manual_seed(0)
    vae = WeightVAE(
        NODE_TYPES,
        16,
        4,
        2,
        1,
        positions=False,
        representation="message_passing",
        edges=EDGES,
        global_attention=False,
    ).eval()
    feats = _features(2)
    poked = {k: v.clone() for k, v in feats.items()}
    poked["a"][0, 0] += 1.0  # graph 0, node a0: neighbours b0..b2 (nodes 5-7)
    mu, _ = vae.encode(feats)
    mu_p, _ = vae.encode(poked)
    changed = (mu_p - mu).abs().amax(-1) > 1e-6  # (B, N)
    assert changed[0].nonzero().flatten().tolist() == [0, 5, 6, 7]
    assert not changed[1].any()
    with pytest.raises(ValueError, match="edges"):
        WeightVAE(NODE_TYPES, 16, 4, 2, 1, representation="message_passing")


def test_vae_without_positions_is_equivariant_to_reordering_nodes_of_a_type():
    """Reordering the rows of one node type (features unchanged) reorders its latents the same way.

    A *hidden-neuron permutation* of a network also permutes the columns of the next layer's
    features; the layer-wise projection sees those as different inputs, so the encoder is not
    invariant to it (see docs/generator.md). Zoo experts share one base, so neurons are aligned.
    """
    torch.manual_seed(0)
    vae = WeightVAE(
        NODE_TYPES, internal_dim=16, latent_dim=4, num_heads=2, num_layers=2, positions=False
    ).eval()
    feats = _features(2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = dict(feats, a=feats["a"][:, perm])
    mu, _ = vae.encode(feats)
    mu_p, _ = vae.encode(shuffled)
    assert torch.allclose(mu_p[:, :5], mu[:, perm], atol=1e-5) and torch.allclose(
        mu_p[:, 5:], mu[:, 5:], atol=1e-5
    )


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_other_parameterisations_recover_the_sample(prediction):
    d = GaussianDiffusion(200, "cosine", prediction=prediction)
    x0 = 4 * torch.randn(1, 3, 2)
    eps_model = _oracle(GaussianDiffusion(200, "cosine"), x0)

    def model(x, t):  # the same oracle, expressed in this parameterisation
        eps = eps_model(x, t)
        a = d.sqrt_alphas_cumprod[t].float().view(-1, 1, 1)
        s = d.sqrt_one_minus_alphas_cumprod[t].float().view(-1, 1, 1)
        return x0.expand_as(x) if prediction == "x0" else a * eps - s * x0

    out = d.ddim_sample(model, (1, 3, 2), steps=20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)
    t = torch.tensor([37])
    noise = torch.randn(1, 3, 2)
    loss = d.training_loss(lambda x, tt: model(x, tt), x0, t=t, noise=noise)
    assert loss.item() < 1e-10  # the oracle output is exactly the training target
