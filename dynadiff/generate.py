"""Generation API: observations of an unseen environment -> complete expert weights, no gradient step.

    model = DynaDiff.load("runs/.../dynadiff.pt")
    experts = model.generate(observations, num_samples=1, steps=50, seed=0)   # list[nn.Module]
    future = model.predict(observations, horizon=100)                         # rollout from the last frame
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

import weightgraph as wg
from weightgraph.normalize import Normalizer

from .data.dataset import normalise
from .diffusion import GaussianDiffusion, classifier_free_guidance
from .eval.rollout import rollout
from .nn.dit import LatentDiT
from .nn.prompter import DynamicsPrompter
from .nn.vae import WeightVAE
from .training.generator import build_generator
from .zoo.archive import expert_layout
from .zoo.experts import advance


class DynaDiff(nn.Module):
    """The trained generator: prompter -> latent DiT (DDIM) -> VAE decoder -> weightgraph -> expert."""

    def __init__(self, vae: WeightVAE, dit: LatentDiT, prompter: DynamicsPrompter, diffusion: GaussianDiffusion,
                 normalizer: Normalizer, expert_cfg: Mapping[str, Any], channels: int, residual: bool,
                 field_mean: Tensor, field_std: Tensor, latent_mean: Tensor, latent_std: Tensor,
                 config: Mapping[str, Any]):
        super().__init__()
        self.vae, self.dit, self.prompter, self.diffusion = vae.eval(), dit.eval(), prompter.eval(), diffusion
        self.normalizer, self.expert_cfg, self.channels, self.residual = normalizer, dict(expert_cfg), channels, residual
        self.template, self.layout = expert_layout(self.expert_cfg, channels)
        self.register_buffer("field_mean", field_mean)
        self.register_buffer("field_std", field_std)
        self.register_buffer("latent_mean", latent_mean)  # (nodes, h): diffusion runs on (z - mean) / std
        self.register_buffer("latent_std", latent_std)
        self.config = dict(config)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        state = {"vae": self.vae.state_dict(), "dit": self.dit.state_dict(), "prompter": self.prompter.state_dict(),
                 "vae_node_types": self.vae.node_types, "normalizer": self.normalizer.state_dict(),
                 "expert_cfg": self.expert_cfg, "channels": self.channels, "residual": self.residual,
                 "field_mean": self.field_mean, "field_std": self.field_std, "latent_mean": self.latent_mean,
                 "latent_std": self.latent_std,
                 "config": self.config, "vae_sizes": self._vae_sizes()}
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def _vae_sizes(self) -> dict[str, Any]:
        return {"internal_dim": self.vae.proj_in[self.vae.node_types[0][0]].out_features,
                "latent_dim": self.vae.latent_dim, "num_heads": self.vae.encoder[0].attn.num_heads,
                "num_layers": len(self.vae.encoder), "positions": self.vae.enc_embed.positions is not None}

    @classmethod
    def load(cls, path: str | Path) -> DynaDiff:
        s = torch.load(path, map_location="cpu", weights_only=False)
        vae = WeightVAE(s["vae_node_types"], **s["vae_sizes"])
        vae.load_state_dict(s["vae"])
        gcfg = s["config"]["generator"]
        counts = [n for _, n, _ in s["vae_node_types"]]
        frame_shape = tuple(s["config"]["frame_shape"])
        dit, prompter, diffusion = build_generator(counts, vae.latent_dim, frame_shape,
                                                   s["config"]["num_env_params"], gcfg)
        dit.load_state_dict(s["dit"])
        prompter.load_state_dict(s["prompter"])
        _, layout = expert_layout(s["expert_cfg"], s["channels"])
        normalizer = Normalizer.from_state_dict(layout, s["normalizer"])
        return cls(vae, dit, prompter, diffusion, normalizer, s["expert_cfg"], s["channels"], s["residual"],
                   s["field_mean"], s["field_std"], s["latent_mean"], s["latent_std"], s["config"])

    # ------------------------------------------------------------------ generation
    def _prepare(self, observations: Tensor, normalized: bool) -> Tensor:
        obs = observations if observations.dim() == len(self.config["frame_shape"]) + 2 else observations[None]
        obs = obs.to(self.field_mean.device)
        return obs if normalized else normalise(obs, self.field_mean, self.field_std, channel_dim=2 - obs.dim())

    @torch.no_grad()
    def generate_features(self, observations: Tensor, num_samples: int = 1, steps: int = 50, seed: int | None = None,
                          guidance: float = 1.0, normalized: bool = False) -> dict[str, Tensor]:
        """Weight-graph features ``{key: (B * num_samples, N_t, D_t)}`` for observations ``(B, L, ...)`` or ``(L, ...)``."""
        obs = self._prepare(observations, normalized)
        prompt = self.prompter(obs).repeat_interleave(num_samples, 0)  # (B S, P)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        null = {"drop_prompt": torch.ones(len(prompt), dtype=torch.bool, device=prompt.device)}
        model = classifier_free_guidance(self.dit, guidance, null)
        shape = (len(prompt), self.vae.num_nodes, self.vae.latent_dim)
        z = self.diffusion.ddim_sample(model, shape, steps=steps, generator=g, device=prompt.device, prompt=prompt)
        z = z * self.latent_std + self.latent_mean
        return self.normalizer.inverse({k: v.cpu() for k, v in self.vae.decode(z).items()})

    def generate(self, observations: Tensor, num_samples: int = 1, steps: int = 50, seed: int | None = None,
                 guidance: float = 1.0, normalized: bool = False) -> list[nn.Module]:
        """Expert modules (the zoo's architecture carrying generated weights, on the CPU), one batched
        denoising loop on the model's device.

        Args:
            observations: ``(L, C, H, W)`` or ``(B, L, C, H, W)`` frames of the target environment(s)
                (``(L, D)`` / ``(B, L, D)`` for ODEs), physical units unless ``normalized``.
            num_samples: experts per environment. steps: DDIM steps. seed: sampling seed.
            guidance: classifier-free guidance scale (1 = off).
        """
        feats = self.generate_features(observations, num_samples, steps, seed, guidance, normalized)
        return [wg.to_module(g, self.template).eval() for g in self.layout.graphs_from_stack(feats)]

    @torch.no_grad()
    def estimate_environment(self, observations: Tensor, normalized: bool = False) -> Tensor:
        """The environment parameters ``(B, P)`` the prompter's auxiliary head reads from ``observations``.

        A diagnostic of how informative the prompt is (needs a model trained with ``aux_weight > 0``).
        """
        prompt = self.prompter(self._prepare(observations, normalized))
        mean, std = (torch.tensor(self.config[k], dtype=prompt.dtype, device=prompt.device)
                     for k in ("param_mean", "param_std"))
        return self.prompter.regress(prompt) * std + mean

    def predictor(self, expert: nn.Module):
        """The one-step predictor of a generated expert on normalised fields."""
        return lambda x: advance(expert, x, self.residual)

    @torch.no_grad()
    def predict(self, observations: Tensor, horizon: int, steps: int = 50, seed: int | None = None) -> Tensor:
        """Generate one expert from ``observations (L, ...)`` (physical units) and roll it out ``horizon``
        steps from the last observed frame; returns ``(horizon, ...)`` in physical units."""
        obs = self._prepare(observations, normalized=False)[0]
        expert = self.generate(obs, steps=steps, seed=seed, normalized=True)[0].to(obs.device)
        traj = rollout(self.predictor(expert), obs[-1:], horizon)[0]
        shape = [1] * traj.dim()
        shape[-3 if traj.dim() == 4 else -1] = -1  # channel axis: (T, C, H, W) or (T, D)
        return traj * self.field_std.view(shape) + self.field_mean.view(shape)
