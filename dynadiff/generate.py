"""Generation API: observations of an unseen environment -> complete expert weights, no gradient step.

model = DynaDiff.load("runs/.../dynadiff.pt")
experts = model.generate(observations, num_samples=1, steps=50, seed=0)   # list[nn.Module]
future = model.predict(observations, horizon=100)                         # rollout from the last frame
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

import weightgraph as wg
from weightgraph.normalize import Normalizer

from .data.dataset import normalise
from .diffusion import classifier_free_guidance
from .eval.rollout import rollout
from .io import CheckpointError, load_torch, save_torch
from .model import DynaDiffConfig, build_generator, build_vae, latent_centre
from .nn.vae import encode_zoo
from .zoo.archive import expert_layout
from .zoo.experts import advance

FORMAT, VERSION = "dynadiff", 2


class DynaDiff(nn.Module):
    """The trained generator: prompter -> latent DiT (DDIM) -> VAE decoder -> weightgraph -> expert.

    Args:
        config: the architecture (:class:`~dynadiff.model.DynaDiffConfig`); the networks are built
            from it, and training or :meth:`load` fills in the weights and the buffers
            ``field_mean/std (C,)`` (data normalisation), ``latent_mean/std (N, h)`` and
            ``latent_slopes (M - 1, N, h)`` (diffusion runs on ``(z - centre) / std``,
            :func:`~dynadiff.model.latent_centre`), ``param_mean/std (P,)`` (auxiliary head scaling)
            and the weight-feature normaliser.
    """

    def __init__(self, config: DynaDiffConfig):
        super().__init__()
        self.config = config
        self.expert_cfg, self.channels, self.residual = (
            config.expert,
            config.channels,
            config.residual,
        )
        template, self.layout = expert_layout(self.expert_cfg, self.channels)
        self.vae = build_vae(config, self.layout.edges).eval()
        dit, prompter, self.diffusion = build_generator(config)
        self.dit, self.prompter = dit.eval(), prompter.eval()
        # not a submodule: its weights are never used (generated ones are written into copies), and
        # neuraloperator state carries non-tensor metadata that a weights-only load must not see
        object.__setattr__(self, "template", template)
        self.normalizer = Normalizer(
            self.layout,
            *({nt.key: torch.zeros(()) for nt in self.layout.node_types} for _ in range(2)),
        )
        tokens, h, p = self.vae.num_tokens, config.vae.latent_dim, len(config.env_params)
        for name, shape in (
            ("field", (config.channels,)),
            ("latent", (tokens, h)),
            ("param", (p,)),
        ):
            self.register_buffer(f"{name}_mean", torch.zeros(shape))
            self.register_buffer(f"{name}_std", torch.ones(shape))
        monomials = math.comb(p + config.latent_mean_degree, p)  # of degree 0..latent_mean_degree
        self.register_buffer("latent_slopes", torch.zeros(monomials - 1, tokens, h))
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``dynadiff.pt`` atomically: format tag, config, weights, normaliser (no pickled objects)."""
        return save_torch(
            path,
            {
                "format": FORMAT,
                "version": VERSION,
                "config": self.config.to_dict(),
                "state": self.state_dict(),
                "normalizer": self.normalizer.state_dict(),
                "meta": self.meta,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> DynaDiff:
        """Rebuild from ``dynadiff.pt`` (read with ``weights_only=True``: loading never executes code)."""
        s = load_torch(path)
        if s.get("format") != FORMAT:
            raise CheckpointError(
                f"{path}: not a DynaDiff model file (no format tag {FORMAT!r}; keys: {sorted(s)[:6]}). "
                "A dynadiff.pt written before dynadiff 0.2 is not read: regenerate it with "
                "`dynadiff stage=dit` (the data, zoo and VAE are reused)"
            )
        if s.get("version") != VERSION:
            raise CheckpointError(
                f"{path}: DynaDiff format version {s.get('version')!r}, this code reads {VERSION}"
            )
        model = cls(DynaDiffConfig.from_dict(s["config"]))
        state = dict(s["state"])
        state.setdefault("latent_slopes", model.latent_slopes)  # saved before the regression mean
        model.load_state_dict(state)
        model.normalizer = Normalizer.from_state_dict(model.layout, s["normalizer"])
        model.meta = dict(s.get("meta", {}))
        return model.eval()

    # ------------------------------------------------------------------ generation
    def _prepare(self, observations: Tensor, normalized: bool) -> Tensor:
        obs = (
            observations
            if observations.dim() == len(self.config.frame_shape) + 2
            else observations[None]
        )
        obs = obs.to(self.field_mean.device)
        return (
            obs
            if normalized
            else normalise(obs, self.field_mean, self.field_std, channel_dim=2 - obs.dim())
        )

    @torch.no_grad()
    def generate_features(
        self,
        observations: Tensor,
        num_samples: int = 1,
        steps: int = 50,
        seed: int | None = None,
        guidance: float = 1.0,
        normalized: bool = False,
        temperature: float = 1.0,
    ) -> dict[str, Tensor]:
        """Weight-graph features ``{key: (B * num_samples, N_t, D_t)}`` for observations ``(B, L, ...)`` or
        ``(L, ...)``; ``temperature`` scales the initial noise of the (deterministic) DDIM path."""
        if num_samples < 1 or steps < 1:
            raise ValueError(f"num_samples and steps must be >= 1, got {num_samples} and {steps}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        obs = self._prepare(observations, normalized)
        prompt = self.condition(obs).repeat_interleave(num_samples, 0)  # (B S, P)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        null = {"drop_prompt": torch.ones(len(prompt), dtype=torch.bool, device=prompt.device)}
        model = classifier_free_guidance(self.dit, guidance, null)
        shape = (len(prompt), self.vae.num_tokens, self.vae.latent_dim)
        noise = temperature * torch.randn(shape, generator=g).to(prompt.device)
        z = self.diffusion.ddim_sample(model, shape, steps=steps, noise=noise, prompt=prompt)
        z = z * self.latent_std + self.centre(prompt)
        return self.normalizer.inverse(
            {k: v.cpu() for k, v in self.vae.decode(z).items()}
        )  # normaliser on the CPU

    def generate(
        self,
        observations: Tensor,
        num_samples: int = 1,
        steps: int = 50,
        seed: int | None = None,
        guidance: float = 1.0,
        normalized: bool = False,
        temperature: float = 1.0,
        candidates: int = 1,
    ) -> list[nn.Module]:
        """Expert modules (the zoo's architecture carrying generated weights, on the CPU), one batched
        denoising loop on the model's device; ``num_samples`` per environment, environment-major.

        Args:
            observations: ``(L, C, H, W)`` or ``(B, L, C, H, W)`` frames of the target environment(s)
                (``(L, D)`` / ``(B, L, D)`` for ODEs), physical units unless ``normalized``.
            num_samples: experts per environment. steps: DDIM steps. seed: sampling seed.
            guidance: classifier-free guidance scale (1 = off).
            temperature: scale of the initial noise (1: samples of the learned distribution; 0: one
                deterministic path from its centre).
            candidates: draw ``candidates * num_samples`` experts per environment and keep the
                ``num_samples`` whose one-step predictions fit the observed frames best
                (:meth:`observed_error`; needs ``L >= 2``). The observations are data the prompt only
                summarises: ranking candidates by them checks every generated expert against the
                dynamics it is meant to reproduce, without a gradient step.
        """
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        obs = self._prepare(observations, normalized)
        if candidates > 1 and obs.shape[1] < 2:
            raise ValueError(
                f"choosing among candidates needs >= 2 observed frames (one step), got {obs.shape[1]}"
            )
        feats = self.generate_features(
            obs,
            num_samples * candidates,
            steps,
            seed,
            guidance,
            normalized=True,
            temperature=temperature,
        )
        experts = self._experts(feats)
        if candidates == 1:
            return experts
        kept = []
        for b in range(obs.shape[0]):
            group = experts[b * num_samples * candidates : (b + 1) * num_samples * candidates]
            errors = torch.tensor([self.observed_error(e, obs[b]) for e in group])
            kept += [group[i] for i in errors.argsort()[:num_samples].tolist()]
        return kept

    @torch.no_grad()
    def observed_error(self, expert: nn.Module, observations: Tensor) -> float:
        """Mean squared one-step error of ``expert`` on the ``L - 1`` pairs of consecutive normalised
        frames ``observations (L, ...)``."""
        obs = observations.cpu()
        return torch.mean((advance(expert, obs[:-1], self.residual) - obs[1:]) ** 2).item()

    def _experts(self, feats: Mapping[str, Tensor]) -> list[nn.Module]:
        """Weight-graph features ``{key: (B, N_t, D_t)}`` -> ``B`` expert modules (CPU)."""
        return [wg.to_module(g, self.template).eval() for g in self.layout.graphs_from_stack(feats)]

    def encode(self, features: Mapping[str, Tensor]) -> Tensor:
        """Posterior-mean VAE latents ``(n, T, h)`` of ``n`` experts with weight features
        ``{key: (n, N_t, D_t)}`` (as the zoo stores them)."""
        device = self.field_mean.device
        return encode_zoo(
            self.vae,
            {k: v.float().to(device) for k, v in self.normalizer.transform(features).items()},
        )

    @torch.no_grad()
    def decode(self, latents: Tensor) -> list[nn.Module]:
        """Expert modules (CPU) decoded from VAE latents ``(B, T, h)``."""
        decoded = self.vae.decode(latents.to(self.field_mean.device))
        return self._experts(self.normalizer.inverse({k: v.cpu() for k, v in decoded.items()}))

    def decode_mean_latent(self, features: Mapping[str, Tensor]) -> nn.Module:
        """The expert decoded from the mean VAE latent of ``n`` experts with weight features
        ``{key: (n, N_t, D_t)}``: the centre of their cluster in latent space."""
        return self.decode(self.encode(features).mean(0, keepdim=True))[0]

    def condition(self, obs: Tensor) -> Tensor:
        """What the DiT is conditioned on for normalised observations ``obs (B, L, ...)``: the prompt
        ``(B, prompt_dim)``, or with ``condition`` ``estimate``/``head`` the standardised
        environment parameters ``(B, P)`` the prompter reads from them."""
        prompt = self.prompter(obs)
        if self.config.condition == "prompt":
            return prompt
        return self.prompter.read_environment(prompt, self.config.condition)

    def centre(self, condition: Tensor) -> Tensor:
        """The centre ``(B, T, h)`` that the diffused latents deviate from, for the DiT's condition
        ``(B, ...)``: the zoo's mean latent, or with ``latent_mean_degree > 0`` its regression on the
        standardised environment parameters that the condition is."""
        return latent_centre(
            self.latent_mean, self.latent_slopes, condition, self.config.latent_mean_degree
        )

    @property
    def environment_source(self) -> str | None:
        """How :meth:`estimate_environment` reads the parameters: ``"estimate"`` when the DiT is
        conditioned on the closed-form estimate, else ``"head"`` (the auxiliary head), ``None`` when
        there is neither."""
        if self.config.condition == "estimate":
            return "estimate"
        return "head" if self.prompter.aux is not None else None

    @property
    def reads_environment(self) -> bool:
        """Whether :meth:`estimate_environment` works."""
        return self.environment_source is not None

    @torch.no_grad()
    def estimate_environment(self, observations: Tensor, normalized: bool = False) -> Tensor:
        """The environment parameters ``(B, P)`` read from ``observations``: by the closed-form
        estimate when the DiT is conditioned on it, else by the prompter's auxiliary head.

        A diagnostic of how informative the prompt is (the head needs ``aux_weight > 0``).
        """
        prompt = self.prompter(self._prepare(observations, normalized))
        source = self.environment_source or "head"  # the head's error names what is missing
        return self.prompter.read_environment(prompt, source) * self.param_std + self.param_mean

    def predictor(self, expert: nn.Module):
        """The one-step predictor of a generated expert on normalised fields (the expert follows the
        fields to their device)."""
        return lambda x: advance(expert.to(x.device), x, self.residual)

    def method(
        self,
        steps: int = 50,
        seed: int | None = 0,
        guidance: float = 1.0,
        temperature: float = 1.0,
        candidates: int = 1,
    ):
        """This generator as an evaluation-harness method: ``adapt(env, observations) -> predictor``
        (observations normalised, ``(L, ...)``; one expert kept per call, no gradient step; the
        arguments as in :meth:`generate`)."""

        def adapt(env: int, obs: Tensor):
            return self.predictor(
                self.generate(
                    obs,
                    steps=steps,
                    seed=seed,
                    guidance=guidance,
                    normalized=True,
                    temperature=temperature,
                    candidates=candidates,
                )[0]
            )

        return adapt

    @torch.no_grad()
    def predict(
        self, observations: Tensor, horizon: int, steps: int = 50, seed: int | None = None
    ) -> Tensor:
        """Generate one expert from ``observations (L, ...)`` (physical units) and roll it out ``horizon``
        steps from the last observed frame; returns ``(horizon, ...)`` in physical units."""
        obs = self._prepare(observations, normalized=False)[0]
        expert = self.generate(obs, steps=steps, seed=seed, normalized=True)[0]
        traj = rollout(self.predictor(expert), obs[-1:], horizon)[0]
        shape = [1] * traj.dim()
        shape[-3 if traj.dim() == 4 else -1] = -1  # channel axis: (T, C, H, W) or (T, D)
        return traj * self.field_std.view(shape) + self.field_mean.view(shape)
