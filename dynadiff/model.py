"""The DynaDiff model's configuration and the one place its networks are built.

:class:`DynaDiffConfig` holds every init argument of the VAE, the DiT, the prompter, the diffusion
process and the expert architecture. It is made from the composed Hydra config and the zoo it is
trained on (:meth:`DynaDiffConfig.from_config`), saved inside ``dynadiff.pt``, and turned into
networks by :func:`build_vae` / :func:`build_generator`, which training, the CLI and
:meth:`dynadiff.generate.DynaDiff.load` all use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from .diffusion import GaussianDiffusion
from .nn.dit import DIT_PRESETS, LatentDiT
from .nn.prompter import DynamicsPrompter, monomials
from .nn.vae import (
    VAE_PRESETS,
    Edges,
    RawWeights,
    WeightVAE,
    default_token_size,
    token_counts,
)

# what the DiT is conditioned on (``generator.dit.condition``, docs/generator.md)
CONDITIONS = ("prompt", "estimate", "head")


@dataclass(frozen=True)
class VAEConfig:
    """:class:`~dynadiff.nn.vae.WeightVAE` sizes (width ``D``, latent ``h``, heads, blocks ``K``) and
    its weight representation (``graph`` | ``sequence`` | ``message_passing``)."""

    internal_dim: int
    latent_dim: int
    num_heads: int
    num_layers: int
    positions: bool = True
    representation: str = "graph"
    token_size: int | None = None
    global_attention: bool = True


@dataclass(frozen=True)
class DiTConfig:
    """:class:`~dynadiff.nn.dit.LatentDiT` sizes and its prompt dropout (classifier-free guidance)."""

    hidden: int
    depth: int
    heads: int
    prompt_dropout: float
    mlp_ratio: float = 4.0
    positions: bool = True


@dataclass(frozen=True)
class PrompterConfig:
    """:class:`~dynadiff.nn.prompter.DynamicsPrompter`: GRU width, Fourier modes, the propagator and
    tendency statistics, the auxiliary head's size (``num_env_params``, 0: none) and the number of
    parameters estimated in closed form in the prompt (``env_estimate``, 0: none)."""

    hidden: int
    modes: int
    propagator: bool
    num_env_params: int
    tendency_degree: int = 0  # 0 in models saved before the tendency statistic existed
    env_estimate: int = 0  # parameters estimated in closed form in the prompt (0: none)


@dataclass(frozen=True)
class DiffusionConfig:
    num_steps: int
    schedule: str
    prediction: str


@dataclass(frozen=True)
class DynaDiffConfig:
    """Everything needed to rebuild a DynaDiff model before loading its weights.

    Args:
        node_types: ``[(key, N_t, D_t), ...]``: the expert's weight-graph node types.
        frame_shape: ``(C, H, W)`` (fields) or ``(D,)`` (ODE states) of one observed frame.
        expert: the expert architecture config (``dynadiff/configs/expert``); ``channels``, ``residual``:
            its data channels and whether it predicts increments.
        env_params: names of the environment parameters.
        vae, dit, prompter, diffusion: the networks' init arguments.
        condition: what the DiT is conditioned on (:data:`CONDITIONS`): ``prompt`` (the prompter's
            output, the paper) or the standardised environment parameters, read from the
            observations at generation by the prompter's closed-form ``estimate`` or its auxiliary
            ``head`` (the true parameters of each expert's environment in training).
        latent_mean_degree: the degree of the polynomial in the standardised environment
            parameters that centres the latents the DiT diffuses (:func:`latent_centre`); 0: the
            zoo's mean latent (the paper); >= 1 needs ``condition`` ``estimate`` or ``head``.
        system: the system name (informational).
    """

    node_types: tuple[tuple[str, int, int], ...]
    frame_shape: tuple[int, ...]
    expert: dict
    channels: int
    residual: bool
    env_params: tuple[str, ...]
    vae: VAEConfig
    dit: DiTConfig
    prompter: PrompterConfig
    diffusion: DiffusionConfig
    system: str = ""
    extra: dict = field(default_factory=dict)
    condition: str = "prompt"
    latent_mean_degree: int = 0

    @property
    def condition_dim(self) -> int | None:
        """The DiT's conditioning width when it is the parameters (``None``: the prompt's width)."""
        return None if self.condition == "prompt" else len(self.env_params)

    @classmethod
    def from_config(
        cls,
        generator: Mapping[str, Any],
        *,
        node_types,
        frame_shape,
        expert: Mapping[str, Any],
        channels: int,
        residual: bool,
        env_params,
        system: str = "",
    ) -> DynaDiffConfig:
        """From the ``generator`` section of the composed config and what the zoo and data fix."""
        v, d = generator["vae"], generator["dit"]
        pc = d["prompter"]
        condition = d.get("condition", "prompt")
        if condition not in CONDITIONS:
            raise ValueError(
                f"generator.dit.condition must be one of {CONDITIONS}, got {condition!r}"
            )
        degree = int(d.get("latent_mean_degree", 0))
        if degree > 0 and condition == "prompt":
            raise ValueError(
                "generator.dit.latent_mean_degree > 0 centres the latents on the environment "
                "parameters: it needs generator.dit.condition=estimate or head"
            )
        return cls(
            node_types=tuple((str(k), int(n), int(w)) for k, n, w in node_types),
            frame_shape=tuple(int(s) for s in frame_shape),
            expert=dict(expert),
            channels=int(channels),
            residual=bool(residual),
            env_params=tuple(env_params),
            system=system,
            vae=_vae_config(v, node_types),
            dit=DiTConfig(
                **{**DIT_PRESETS[d["size"]], **d["model"]}, prompt_dropout=d["prompt_dropout"]
            ),
            prompter=PrompterConfig(
                pc["hidden"],
                pc["modes"],
                pc["propagator"],
                len(env_params) if d["aux_weight"] > 0 else 0,
                int(pc["tendency_degree"]),
                len(env_params) if pc["env_estimate"] or condition == "estimate" else 0,
            ),
            diffusion=DiffusionConfig(**d["diffusion"]),
            condition=condition,
            latent_mean_degree=degree,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (saved in ``dynadiff.pt``, read back with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DynaDiffConfig:
        return cls(
            node_types=tuple(tuple(t) for t in d["node_types"]),
            frame_shape=tuple(d["frame_shape"]),
            expert=dict(d["expert"]),
            channels=d["channels"],
            residual=d["residual"],
            env_params=tuple(d["env_params"]),
            vae=VAEConfig(**d["vae"]),
            dit=DiTConfig(**d["dit"]),
            prompter=PrompterConfig(**d["prompter"]),
            diffusion=DiffusionConfig(**d["diffusion"]),
            system=d.get("system", ""),
            extra=dict(d.get("extra", {})),
            condition=d.get("condition", "prompt"),  # models saved before the option: the prompt
            latent_mean_degree=d.get("latent_mean_degree", 0),
        )


def latent_centre(mean: Tensor, slopes: Tensor, params: Tensor, degree: int) -> Tensor:
    """The centre of the diffused latents ``(B, T, h)``: ``mean (T, h)`` plus the polynomial of degree
    ``degree`` with coefficients ``slopes (M - 1, T, h)`` on the non-constant monomials
    (:func:`~dynadiff.nn.prompter.monomials`) of each row of standardised environment parameters
    ``params (B, P)``; degree 0: ``mean`` for every row."""
    if degree == 0:
        return mean.expand(len(params), *mean.shape)
    x = monomials(params.to(slopes.dtype), degree)[:, 1:]
    return mean + torch.einsum("bm,mth->bth", x, slopes)


def _vae_config(v: Mapping[str, Any], node_types) -> VAEConfig:
    sizes = {**VAE_PRESETS[v["size"]], **v["model"]}
    if v["representation"] == "raw":  # the latent is a token of weights: h = the token size
        token_size = v["token_size"] or default_token_size(node_types)
        sizes["latent_dim"] = token_size
        return VAEConfig(**sizes, representation="raw", token_size=token_size)
    return VAEConfig(**sizes, representation=v["representation"], token_size=v["token_size"])


def build_vae(cfg: DynaDiffConfig, edges: Edges | None = None) -> WeightVAE | RawWeights:
    """The weight VAE (freshly initialised; :class:`RawWeights` for single-stage diffusion);
    ``edges`` (``GraphLayout.edges``): needed by ``message_passing``, ignored by the others."""
    if cfg.vae.representation == "raw":
        return RawWeights(cfg.node_types, cfg.vae.token_size)
    return WeightVAE(list(cfg.node_types), **asdict(cfg.vae), edges=edges)


def build_generator(cfg: DynaDiffConfig) -> tuple[LatentDiT, DynamicsPrompter, GaussianDiffusion]:
    """DiT, prompter and diffusion process (freshly initialised; the prompter first, as trained)."""
    p = cfg.prompter
    prompter = DynamicsPrompter(
        cfg.frame_shape,
        hidden=p.hidden,
        modes=p.modes,
        num_env_params=p.num_env_params,
        propagator=p.propagator,
        tendency_degree=p.tendency_degree,
        env_estimate=p.env_estimate,
    )
    counts = token_counts(cfg.node_types, cfg.vae.representation, cfg.vae.token_size)
    width = prompter.prompt_dim if cfg.condition_dim is None else cfg.condition_dim
    dit = LatentDiT(counts, cfg.vae.latent_dim, width, **asdict(cfg.dit))
    return dit, prompter, GaussianDiffusion(**asdict(cfg.diffusion))
