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

from weightgraph.normalize import Normalizer

from ..data.dataset import Dataset
from ..distributed import SINGLE, World
from ..model import DynaDiffConfig, build_vae
from ..nn.vae import RawWeights, WeightVAE, kl_divergence, reconstruction_error
from ..zoo.archive import ZooArchive
from .loop import LoopConfig, train


@dataclass
class ProbeInputs:
    """Per expert: ``x (N, K, ...)`` sample inputs from its environment and the expert's outputs ``y`` on them."""

    x: Tensor
    y: Tensor


def probe_inputs(archive: ZooArchive, data: Dataset, k: int, seed: int = 0) -> ProbeInputs:
    """``k`` random normalised training frames of each expert's environment, and the expert's outputs."""
    frames = data.probe_frames(archive.env_index.unique().tolist(), k, seed)
    xs = torch.stack([frames[int(e)] for e in archive.env_index])  # (N, K, ...)
    params = archive.layout.unflatten(archive.features)
    with torch.no_grad():
        ys = torch.stack(
            [
                functional_call(archive.template, {n: v[i] for n, v in params.items()}, (xs[i],))
                for i in range(len(archive))
            ]
        )
    return ProbeInputs(xs, ys)


def expert_outputs(
    archive: ZooArchive,
    normalizer: Normalizer,
    feats_n: Mapping[str, Tensor],
    x: Tensor,
    template: torch.nn.Module | None = None,
) -> Tensor:
    """Outputs ``(B, K, ...)`` of the experts whose normalised features are ``feats_n (B, N_t, D_t)`` on ``x (B, K, ...)``.

    ``template``: the expert module to call (default ``archive.template``; pass a copy on the features' device).
    """
    params = archive.layout.unflatten(normalizer.inverse(feats_n), check=False)
    template = archive.template if template is None else template
    # A loop, not vmap: neuraloperator's in-place ops do not vmap (see shared design notes).
    return torch.stack(
        [
            functional_call(template, {n: v[i] for n, v in params.items()}, (x[i],))
            for i in range(x.shape[0])
        ]
    )


def functional_error(out: Tensor, ref: Tensor) -> Tensor:
    """Per-expert squared output difference, relative to the output power: ``(B,)``."""
    return (out - ref).pow(2).flatten(1).mean(1) / ref.pow(2).flatten(1).mean(1).clamp_min(1e-12)


def train_vae(
    archive: ZooArchive,
    probes: ProbeInputs,
    model_cfg: DynaDiffConfig,
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    progress: bool = True,
    device: torch.device | str = "cpu",
    key: Any = None,
    world: World = SINGLE,
) -> tuple[WeightVAE | RawWeights, Normalizer, dict[str, float]]:
    """Train (or resume) the VAE on ``device``; returns the model (on the CPU), the feature normaliser and
    final metrics.

    ``model_cfg``: the architecture; ``cfg``: the ``generator.vae`` section (``steps``, ``batch_size``,
    ``lr``, ``beta``, ``func_weight``, ``recon_weight``, ``seed``, logging and clipping); ``key``:
    identifies the inputs, so that ``vae_last.pt`` is resumed only for the same config and zoo;
    ``world``: data-parallel processes (the same model as one process with the same batch).
    """
    out = Path(out_dir)
    device = torch.device(device)
    normalizer = Normalizer.fit_stacked(archive.layout, archive.features)
    feats_n = {k: v.float() for k, v in normalizer.transform(archive.features).items()}
    torch.manual_seed(cfg["seed"])
    vae = build_vae(model_cfg, archive.layout.edges).to(device)
    on_device = normalizer.to(device)
    template = (
        archive.template if device.type == "cpu" else copy.deepcopy(archive.template).to(device)
    )
    g = torch.Generator().manual_seed(cfg["seed"])
    n = len(archive)

    def loss_fn(step: int) -> dict[str, Tensor]:
        # the global batch and its noise are drawn by every rank; each computes its share of rows
        idx_all = torch.randint(n, (min(cfg["batch_size"], n),), generator=g)
        rows = world.rows(len(idx_all))
        idx = idx_all[rows]
        batch = {k: v[idx].to(device) for k, v in feats_n.items()}
        mu, logvar = vae.encode(batch)
        eps = torch.randn((len(idx_all), *mu.shape[1:]), dtype=mu.dtype)[rows].to(device)
        rec = vae.decode(mu + eps * (0.5 * logvar).exp())
        terms = {
            "recon": reconstruction_error(rec, batch).mean(),
            "kl": kl_divergence(mu, logvar).mean(),
        }
        loss = cfg["recon_weight"] * terms["recon"] + cfg["beta"] * terms["kl"]
        if cfg["func_weight"] > 0:
            out_rec = expert_outputs(archive, on_device, rec, probes.x[idx].to(device), template)
            terms["func"] = functional_error(out_rec, probes.y[idx].to(device)).mean()
            loss = loss + cfg["func_weight"] * terms["func"]
        return {**terms, "loss": loss}

    t0 = time.perf_counter()
    if any(
        True for _ in vae.parameters()
    ):  # RawWeights (single-stage diffusion) has nothing to train
        train(
            vae,
            loss_fn,
            LoopConfig.from_section(cfg, "constant"),
            g,
            checkpoint=out / "vae_last.pt",
            key={"config": dict(cfg), "inputs": key},
            log_dir=out / "vae_log",
            desc="train VAE" if progress else None,
            world=world,
        )
    vae.eval().cpu()
    metrics = evaluate_vae(vae, archive, normalizer, feats_n, probes)
    metrics["train_seconds"] = time.perf_counter() - t0
    return vae, normalizer, metrics


@torch.no_grad()
def evaluate_vae(
    vae: WeightVAE,
    archive: ZooArchive,
    normalizer: Normalizer,
    feats_n: Mapping[str, Tensor],
    probes: ProbeInputs,
    chunk: int = 16,
) -> dict[str, float]:
    """Reconstruction error of the mean latent: in (normalised) weight space and in function space."""
    w_err, f_err = [], []
    for s in range(0, len(archive), chunk):
        batch = {k: v[s : s + chunk] for k, v in feats_n.items()}
        mu, _ = vae.encode(batch)
        rec = vae.decode(mu)
        w_err.append(reconstruction_error(rec, batch))
        f_err.append(
            functional_error(
                expert_outputs(archive, normalizer, rec, probes.x[s : s + chunk]),
                probes.y[s : s + chunk],
            )
        )
    return {
        "weight_mse": torch.cat(w_err).mean().item(),
        "function_rel_mse": torch.cat(f_err).mean().item(),
    }
