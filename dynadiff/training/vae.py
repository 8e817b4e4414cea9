"""Train the weight VAE on a consolidated zoo: reconstruction + beta KL + the functional loss (paper eq. 4).

The functional loss decodes a batch of experts, writes the decoded weights into the expert
architecture with ``torch.func.functional_call`` (differentiable) and penalises the squared
difference between the decoded and the original experts' outputs on sample inputs from each
expert's own environment. ``func_weight = 0`` is the paper's "w/o functional loss" ablation.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor
from torch.func import functional_call
from tqdm.auto import tqdm

from weightgraph.normalize import Normalizer

from ..data.dataset import load_trajectories, normalise
from ..nn.vae import VAE_PRESETS, WeightVAE, kl_divergence, reconstruction_error
from ..zoo.archive import ZooArchive
from .common import MetricLogger, log_and_checkpoint, optimizer_step, resume_state, rng_state, set_rng_state


@dataclass
class ProbeInputs:
    """Per expert: ``x (N, K, ...)`` sample inputs from its environment and the expert's outputs ``y`` on them."""

    x: Tensor
    y: Tensor


def probe_inputs(archive: ZooArchive, data_dir: str | Path, mean: Tensor, std: Tensor, k: int, seed: int = 0
                 ) -> ProbeInputs:
    """``k`` random normalised training frames of each expert's environment, and the expert's outputs."""
    g = torch.Generator().manual_seed(seed)
    frames: dict[int, Tensor] = {}
    for e in archive.env_index.unique().tolist():
        traj = load_trajectories(data_dir, int(e), "train")
        flat = normalise(traj, mean, std, channel_dim=2 - traj.dim()).flatten(0, 1)
        frames[e] = flat[torch.randint(len(flat), (k,), generator=g)]
    xs = torch.stack([frames[int(e)] for e in archive.env_index])  # (N, K, ...)
    params = archive.layout.unflatten(archive.features)
    with torch.no_grad():
        ys = torch.stack([functional_call(archive.template, {n: v[i] for n, v in params.items()}, (xs[i],))
                          for i in range(len(archive))])
    return ProbeInputs(xs, ys)


def expert_outputs(archive: ZooArchive, normalizer: Normalizer, feats_n: Mapping[str, Tensor], x: Tensor,
                   template: torch.nn.Module | None = None) -> Tensor:
    """Outputs ``(B, K, ...)`` of the experts whose normalised features are ``feats_n (B, N_t, D_t)`` on ``x (B, K, ...)``.

    ``template``: the expert module to call (default ``archive.template``; pass a copy on the features' device).
    """
    params = archive.layout.unflatten(normalizer.inverse(feats_n), check=False)
    template = archive.template if template is None else template
    # A loop, not vmap: neuraloperator's in-place ops do not vmap (see shared design notes).
    return torch.stack([functional_call(template, {n: v[i] for n, v in params.items()}, (x[i],))
                        for i in range(x.shape[0])])


def functional_error(out: Tensor, ref: Tensor) -> Tensor:
    """Per-expert squared output difference, relative to the output power: ``(B,)``."""
    return (out - ref).pow(2).flatten(1).mean(1) / ref.pow(2).flatten(1).mean(1).clamp_min(1e-12)


def build_vae(archive: ZooArchive, cfg: Mapping[str, Any]) -> WeightVAE:
    sizes = {**VAE_PRESETS.get(cfg.get("size", "small"), {}), **cfg.get("model", {})}
    return WeightVAE([(nt.key, nt.num_nodes, nt.width) for nt in archive.layout.node_types], **sizes)


def train_vae(archive: ZooArchive, probes: ProbeInputs, cfg: Mapping[str, Any], out_dir: str | Path,
              progress: bool = True, device: torch.device | str = "cpu"
              ) -> tuple[WeightVAE, Normalizer, dict[str, float]]:
    """Train (or resume) the VAE on ``device``; returns the model (on the CPU), the feature normaliser and
    final metrics.

    ``cfg``: ``size`` (preset name) / ``model`` (overrides), ``steps``, ``batch_size``, ``lr``, ``beta``,
    ``func_weight``, ``recon_weight``, ``seed``, ``log_every``, ``ckpt_every``.
    """
    out = Path(out_dir)
    device = torch.device(device)
    normalizer = Normalizer.fit_stacked(archive.layout, archive.features)
    feats_n = {k: v.float() for k, v in normalizer.transform(archive.features).items()}
    torch.manual_seed(cfg["seed"])
    vae = build_vae(archive, cfg).to(device)
    on_device = normalizer.to(device)
    template = archive.template if device.type == "cpu" else copy.deepcopy(archive.template).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))
    g = torch.Generator().manual_seed(cfg["seed"])
    start = 0
    ckpt = resume_state(out / "vae_last.pt", cfg)
    if ckpt is not None:  # resume exactly where the killed run stopped
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"], g)
        start = ckpt["step"]
    logger = MetricLogger(out / "vae_log", tensorboard=cfg.get("tensorboard", False))
    n = len(archive)
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg["steps"]), desc="train VAE", unit="step", disable=not progress,
               initial=start, total=cfg["steps"])
    for step in bar:
        idx = torch.randint(n, (min(cfg["batch_size"], n),), generator=g)
        batch = {k: v[idx].to(device) for k, v in feats_n.items()}
        rec, mu, logvar = vae(batch)
        terms = {"recon": reconstruction_error(rec, batch).mean(), "kl": kl_divergence(mu, logvar).mean()}
        loss = cfg.get("recon_weight", 1.0) * terms["recon"] + cfg["beta"] * terms["kl"]
        if cfg["func_weight"] > 0:
            out_rec = expert_outputs(archive, on_device, rec, probes.x[idx].to(device), template)
            terms["func"] = functional_error(out_rec, probes.y[idx].to(device)).mean()
            loss = loss + cfg["func_weight"] * terms["func"]
        optimizer_step(step, loss, terms, opt, vae.parameters(), cfg.get("grad_clip", 1.0))
        log_and_checkpoint(step, cfg, logger, bar, {**terms, "loss": loss}, out / "vae_last.pt",
                           lambda: {"model": vae.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(g)})
    vae.eval().cpu()
    metrics = evaluate_vae(vae, archive, normalizer, feats_n, probes)
    metrics["train_seconds"] = time.perf_counter() - t0
    return vae, normalizer, metrics


@torch.no_grad()
def evaluate_vae(vae: WeightVAE, archive: ZooArchive, normalizer: Normalizer, feats_n: Mapping[str, Tensor],
                 probes: ProbeInputs, chunk: int = 16) -> dict[str, float]:
    """Reconstruction error of the mean latent: in (normalised) weight space and in function space."""
    w_err, f_err = [], []
    for s in range(0, len(archive), chunk):
        batch = {k: v[s:s + chunk] for k, v in feats_n.items()}
        mu, _ = vae.encode(batch)
        rec = vae.decode(mu)
        w_err.append(reconstruction_error(rec, batch))
        f_err.append(functional_error(expert_outputs(archive, normalizer, rec, probes.x[s:s + chunk]),
                                      probes.y[s:s + chunk]))
    return {"weight_mse": torch.cat(w_err).mean().item(), "function_rel_mse": torch.cat(f_err).mean().item()}
