"""Train the latent DiT jointly with the dynamics-informed prompter (paper section 3.3).

Each step: a batch of zoo experts; their per-node latents from the frozen VAE (posterior means,
standardised per coordinate over the zoo, ``latent_norm``); for each expert an observation window of its own environment with a length drawn from
``[1, L]`` (variable-length training); loss = diffusion noise MSE + ``aux_weight`` x the auxiliary
regression of the (standardised) environment parameters from the prompt. With
``generator.dit.condition`` ``estimate`` or ``head`` the DiT is conditioned on the true standardised
parameters instead of the prompt (docs/generator.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..data.windows import ObservationBank
from ..distributed import SINGLE, World
from ..model import DynaDiffConfig, build_generator, latent_centre
from ..nn.prompter import monomials
from ..nn.vae import WeightVAE, encode_zoo
from ..zoo.archive import ZooArchive
from .loop import LoopConfig, train


def latent_scaling(
    latents: Tensor, params: Tensor, norm: str, degree: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """How the zoo's latents ``(N, T, h)`` are centred and scaled for diffusion: ``(mean (T, h),
    slopes (M - 1, T, h), std (T, h))``, the latent diffused being
    ``(z - latent_centre(mean, slopes, params)) / std``.

    ``norm``: ``per_coordinate`` (each coordinate in units of its spread over the zoo) or ``global``
    (one scale, latent diffusion's usual choice). ``degree`` 0: the centre is the zoo's mean latent
    (``slopes`` is empty). ``degree >= 1``: the centre is a least-squares polynomial of that degree in
    the standardised environment parameters ``params (N, P)`` (``M`` monomials), and the DiT diffuses
    what the regression does not explain (needs ``per_coordinate``).
    """
    n = len(latents)
    if degree > 0:
        # least squares (the minimum-norm solution where the seen environments do not determine
        # every monomial), in double precision on the CPU
        x = monomials(params.detach().double().cpu(), degree)  # (N, M), the constant first
        y = latents.detach().double().cpu().flatten(1)
        coef = torch.linalg.lstsq(x, y, driver="gelsd").solution.view(-1, *latents.shape[1:])
        z_mean, z_slopes = coef[0].to(latents), coef[1:].to(latents)
    else:
        z_mean = latents.mean(0)
        z_slopes = latents.new_zeros((0, *latents.shape[1:]))
    if norm == "per_coordinate":
        # Model deviations from the zoo's mean latent (or its regression on the parameters), per
        # coordinate in units of their spread: all experts share one base, so most of the latent is
        # common to the zoo and carries no environment information.
        residual = latents - latent_centre(z_mean, z_slopes, params, degree)
        z_std = (
            residual.std(0).clamp_min(1e-3 * latents.std().item())
            if n > 1
            else torch.ones_like(z_mean)
        )
    elif norm == "global":
        if degree > 0:
            raise ValueError(
                "a latent regression mean (latent_mean_degree > 0) needs latent_norm=per_coordinate"
            )
        z_mean, z_std = (
            torch.zeros_like(latents[0]),
            latents.std().clamp_min(1e-6).expand_as(latents[0]).clone(),
        )
    else:
        raise ValueError(
            f"generator.dit.latent_norm must be per_coordinate or global, got {norm!r}"
        )
    return z_mean, z_slopes, z_std


def train_generator(
    archive: ZooArchive,
    vae: WeightVAE,
    feats_n: Mapping[str, Tensor],
    bank: ObservationBank,
    model_cfg: DynaDiffConfig,
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    progress: bool = True,
    device: torch.device | str = "cpu",
    key: Any = None,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Train (or resume) DiT + prompter on ``device``. Returns the trained parts (on the CPU) and the
    latent/parameter scalings.

    ``model_cfg``: the architecture; ``cfg``: the ``generator.dit`` section; ``key``: identifies the
    inputs (VAE, zoo, data), so that ``generator_last.pt`` is resumed only for the same ones;
    ``world``: data-parallel processes (the same model as one process with the same batch).
    """
    out = Path(out_dir)
    device = torch.device(device)
    torch.manual_seed(cfg["seed"])
    latents = encode_zoo(vae, feats_n)  # (N, nodes, h)
    params = archive.env_params
    p_mean, p_std = (
        params.mean(0),
        params.std(0).clamp_min(1e-6) if len(params) > 1 else torch.ones(params.shape[1]),
    )
    params_n, degree = (params - p_mean) / p_std, model_cfg.latent_mean_degree
    z_mean, z_slopes, z_std = latent_scaling(latents, params_n, cfg["latent_norm"], degree)
    z_all = (latents - latent_centre(z_mean, z_slopes, params_n, degree)) / z_std
    dit, prompter, diffusion = build_generator(model_cfg)
    envs = sorted(bank.traj)
    window_params = torch.cat(
        [archive.env_params[archive.env_index == e][:1].expand(len(bank.traj[e]), -1) for e in envs]
    )
    prompter.fit_statistics(bank.full(envs), ((window_params - p_mean) / p_std).float())
    parts = torch.nn.ModuleDict({"dit": dit, "prompter": prompter}).to(device)
    z_dev, params_dev = z_all.to(device), params_n.to(device)
    # condition "estimate"/"head": the DiT learns p(latent | parameters) from the true parameters of
    # each expert's environment; the prompter only has to read them (the auxiliary loss)
    by_parameters = model_cfg.condition != "prompt"
    g = torch.Generator().manual_seed(cfg["seed"])
    n = z_all.shape[0]

    def loss_fn(step: int) -> dict[str, Tensor]:
        # the global batch and all its noise are drawn by every rank (the order of one process's
        # draws); each rank computes its share of rows
        idx_all = torch.randint(n, (min(cfg["batch_size"], n),), generator=g)
        obs, lengths = bank.sample(archive.env_index[idx_all], g)
        t = torch.randint(0, diffusion.num_steps, (len(idx_all),), generator=g)
        noise = torch.randn((len(idx_all), *z_all.shape[1:]), dtype=z_all.dtype, generator=g)
        drop = torch.rand(len(idx_all)) < dit.prompt_dropout if dit.prompt_dropout > 0 else None
        rows = world.rows(len(idx_all))
        idx = idx_all[rows]
        prompt = prompter(obs[rows].to(device), lengths[rows].to(device))
        terms = {
            "diffusion": diffusion.training_loss(
                dit,
                z_dev[idx.to(device)],
                t=t[rows].to(device),
                noise=noise[rows].to(device),
                prompt=params_dev[idx.to(device)] if by_parameters else prompt,
                drop_prompt=None if drop is None else drop[rows].to(device),
            ).mean()
        }
        loss = terms["diffusion"]
        if cfg["aux_weight"] > 0:
            terms["aux"] = (prompter.regress(prompt) - params_dev[idx.to(device)]).pow(2).mean()
            loss = loss + cfg["aux_weight"] * terms["aux"]
        return {**terms, "loss": loss}

    t0 = time.perf_counter()
    # what the bank does shapes training too: the window settings are part of the resume key
    run_key = {
        "config": dict(cfg),
        "obs_len": bank.obs_len,
        "shift_axes": list(bank.shift_axes),
        "inputs": key,
    }
    train(
        parts,
        loss_fn,
        LoopConfig.from_section(cfg, "constant"),
        g,
        checkpoint=out / "generator_last.pt",
        key=run_key,
        log_dir=out / "generator_log",
        desc="train DiT + prompter" if progress else None,
        world=world,
    )
    parts.cpu()
    return {
        "dit": dit,
        "prompter": prompter,
        "diffusion": diffusion,
        "latent_mean": z_mean,
        "latent_slopes": z_slopes,
        "latent_std": z_std,
        "param_mean": p_mean,
        "param_std": p_std,
        "train_seconds": time.perf_counter() - t0,
    }
