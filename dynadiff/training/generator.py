"""Train the latent DiT jointly with the dynamics-informed prompter (paper section 3.3).

Each step: a batch of zoo experts; their per-node latents from the frozen VAE (posterior means,
standardised per coordinate over the zoo, ``latent_norm``); for each expert an observation window of its own environment with a length drawn from
``[1, L]`` (variable-length training); loss = diffusion noise MSE + ``aux_weight`` x the auxiliary
regression of the (standardised) environment parameters from the prompt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.dataset import load_trajectories, normalise
from ..diffusion import GaussianDiffusion
from ..nn.dit import DIT_PRESETS, LatentDiT
from ..nn.prompter import DynamicsPrompter
from ..nn.vae import WeightVAE
from ..zoo.archive import ZooArchive
from .common import MetricLogger, log_and_checkpoint, optimizer_step, resume_state, rng_state, set_rng_state


AXES = {"x": -1, "y": -2}  # frames are (C, H, W): H indexes y, W indexes x


def random_shifts(windows: Tensor, axes: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Roll every window ``(B, L, C, H, W)`` by its own random offset along ``axes`` (all its frames alike)."""
    if not axes:
        return windows
    out = torch.empty_like(windows)
    for i, w in enumerate(windows):
        offsets = [int(torch.randint(w.shape[a], (1,), generator=g)) for a in axes]
        out[i] = torch.roll(w, offsets, axes)
    return out


class ObservationBank:
    """Normalised training trajectories per environment; draws length-``l`` windows ``(B, L, ...)``.

    ``shift_axes``: frame axes (``-1`` x, ``-2`` y) along which the system is periodic and translation
    invariant; windows are rolled at random along them, so that the prompter learns the environment
    rather than where the patterns of the few training trajectories sit (the system config's
    ``translation_symmetry``; on the small Lambda-Omega demo this raised the out-domain gap closure
    from 0.79 to 0.96, docs/generator.md).
    """

    def __init__(self, data_dir: str | Path, envs: list[int], mean: Tensor, std: Tensor, obs_len: int,
                 first_frames_only: bool = False, shift_axes: tuple[int, ...] = ()):
        self.obs_len, self.first, self.shift_axes = obs_len, first_frames_only, tuple(shift_axes)
        self.traj: dict[int, Tensor] = {}
        for e in envs:
            t = load_trajectories(data_dir, e, "train")
            self.traj[e] = normalise(t, mean, std, channel_dim=2 - t.dim())

    def sample(self, envs: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Windows ``(B, L, ...)`` of the given environments and their lengths ``(B,)`` drawn from [1, L]."""
        out = []
        for e in envs.tolist():
            t = self.traj[int(e)]
            i = int(torch.randint(t.shape[0], (1,), generator=g))
            s = 0 if self.first else int(torch.randint(t.shape[1] - self.obs_len + 1, (1,), generator=g))
            out.append(t[i, s:s + self.obs_len])
        lengths = torch.randint(1, self.obs_len + 1, (len(out),), generator=g)
        return random_shifts(torch.stack(out), self.shift_axes, g), lengths

    def full(self, envs: list[int]) -> Tensor:
        """The first ``L`` frames of every training trajectory of ``envs`` (for prompt statistics)."""
        return torch.cat([self.traj[e][:, :self.obs_len] for e in envs])


@torch.no_grad()
def encode_zoo(vae: WeightVAE, feats_n: Mapping[str, Tensor], chunk: int = 32) -> Tensor:
    """Mean per-node latents ``(N_experts, N_nodes, h)``."""
    n = next(iter(feats_n.values())).shape[0]
    return torch.cat([vae.encode({k: v[s:s + chunk] for k, v in feats_n.items()})[0] for s in range(0, n, chunk)])


def build_generator(counts: list[int], latent_dim: int, frame_shape: tuple[int, ...], num_env_params: int,
                    cfg: Mapping[str, Any]) -> tuple[LatentDiT, DynamicsPrompter, GaussianDiffusion]:
    pc = cfg["prompter"]
    prompter = DynamicsPrompter(frame_shape, hidden=pc["hidden"], modes=pc["modes"],
                                num_env_params=num_env_params if cfg["aux_weight"] > 0 else 0,
                                propagator=pc.get("propagator", False))  # absent: saved before it existed
    sizes = {**DIT_PRESETS.get(cfg.get("size", "small"), {}), **cfg.get("model", {})}
    dit = LatentDiT(counts, latent_dim, prompter.prompt_dim, prompt_dropout=cfg.get("prompt_dropout", 0.0), **sizes)
    d = cfg["diffusion"]
    return dit, prompter, GaussianDiffusion(d["num_steps"], d["schedule"], d.get("prediction", "eps"))


def train_generator(archive: ZooArchive, vae: WeightVAE, feats_n: Mapping[str, Tensor], bank: ObservationBank,
                    cfg: Mapping[str, Any], out_dir: str | Path, progress: bool = True,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train (or resume) DiT + prompter on ``device``. Returns the trained parts (on the CPU) and the
    latent/parameter scalings."""
    out = Path(out_dir)
    device = torch.device(device)
    torch.manual_seed(cfg["seed"])
    latents = encode_zoo(vae, feats_n)  # (N, nodes, h)
    if cfg.get("latent_norm", "per_coordinate") == "per_coordinate":
        # Model deviations from the zoo's mean latent, per coordinate in units of their spread: all experts
        # share one base, so most of the latent is common to the zoo and carries no environment information.
        z_mean = latents.mean(0)
        z_std = latents.std(0).clamp_min(1e-3 * latents.std().item()) if len(latents) > 1 else torch.ones_like(z_mean)
    else:  # one global scale (latent diffusion's usual choice)
        z_mean, z_std = torch.zeros_like(latents[0]), latents.std().clamp_min(1e-6).expand_as(latents[0]).clone()
    z_all = (latents - z_mean) / z_std
    params = archive.env_params
    p_mean, p_std = params.mean(0), params.std(0).clamp_min(1e-6) if len(params) > 1 else torch.ones(params.shape[1])
    frame_shape = tuple(next(iter(bank.traj.values())).shape[2:])
    counts = [nt.num_nodes for nt in archive.layout.node_types]
    dit, prompter, diffusion = build_generator(counts, z_all.shape[-1], frame_shape, params.shape[1], cfg)
    prompter.fit_statistics(bank.full(sorted(bank.traj)))
    parts = torch.nn.ModuleDict({"dit": dit, "prompter": prompter}).to(device)
    z_dev, params_dev = z_all.to(device), ((params - p_mean) / p_std).to(device)
    opt = torch.optim.AdamW(parts.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))
    g = torch.Generator().manual_seed(cfg["seed"])
    start = 0
    # what the bank does shapes training too: a checkpoint of another window setting is not resumed
    run_cfg = {**cfg, "obs_len": bank.obs_len, "shift_axes": list(bank.shift_axes)}
    ckpt = resume_state(out / "generator_last.pt", run_cfg)
    if ckpt is not None:
        parts.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"], g)
        start = ckpt["step"]
    logger = MetricLogger(out / "generator_log", tensorboard=cfg.get("tensorboard", False))
    n = z_all.shape[0]
    t0 = time.perf_counter()
    parts.train()
    bar = tqdm(range(start, cfg["steps"]), desc="train DiT + prompter", unit="step", disable=not progress,
               initial=start, total=cfg["steps"])
    for step in bar:
        idx = torch.randint(n, (min(cfg["batch_size"], n),), generator=g)
        obs, lengths = bank.sample(archive.env_index[idx], g)
        prompt = prompter(obs.to(device), lengths.to(device))
        terms = {"diffusion": diffusion.training_loss(dit, z_dev[idx.to(device)], generator=g, prompt=prompt).mean()}
        loss = terms["diffusion"]
        if cfg["aux_weight"] > 0:
            terms["aux"] = (prompter.regress(prompt) - params_dev[idx.to(device)]).pow(2).mean()
            loss = loss + cfg["aux_weight"] * terms["aux"]
        optimizer_step(step, loss, terms, opt, parts.parameters(), cfg.get("grad_clip", 1.0))
        log_and_checkpoint(step, run_cfg, logger, bar, terms, out / "generator_last.pt",
                           lambda: {"model": parts.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(g)})
    parts.eval().cpu()
    return {"dit": dit, "prompter": prompter, "diffusion": diffusion, "latent_mean": z_mean, "latent_std": z_std,
            "param_mean": p_mean, "param_std": p_std, "train_seconds": time.perf_counter() - t0}
