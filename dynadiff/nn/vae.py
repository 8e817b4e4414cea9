"""Node-attention weight VAE (paper section 3.1.2, appendix G): one latent per node, no pooling.

Encoder: layer-wise linear projections of each node type's features ``(B, N_t, D_t)`` to a common
width ``D``, plus learned node embeddings; ``K`` pre-norm attention blocks across all nodes of the
graph; a linear head to per-node ``(mu, logvar)`` of width ``h``. Decoder (independent weights):
``h -> D``, node embeddings, ``K`` blocks, and layer-wise inverse projections back to each ``D_t``.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from .embeddings import Block, NodeEmbedding

VAE_PRESETS = {  # internal width D, latent width h, heads, attention blocks K
    "paper": dict(internal_dim=1024, latent_dim=512, num_heads=8, num_layers=4),
    "small": dict(internal_dim=128, latent_dim=16, num_heads=4, num_layers=2),
    "tiny": dict(internal_dim=32, latent_dim=8, num_heads=2, num_layers=1),
}


class WeightVAE(nn.Module):
    """VAE over weight-graph features.

    Args:
        node_types: ``[(key, N_t, D_t), ...]`` in graph order (``GraphLayout.node_types``).
        internal_dim, latent_dim, num_heads, num_layers: D, h, heads, K.
        positions: learned per-node position embeddings (see docs/generator.md on permutations).
    """

    def __init__(
        self,
        node_types: list[tuple[str, int, int]],
        internal_dim: int = 128,
        latent_dim: int = 16,
        num_heads: int = 4,
        num_layers: int = 2,
        positions: bool = True,
    ):
        super().__init__()
        self.node_types = [(k, int(n), int(d)) for k, n, d in node_types]
        counts = [n for _, n, _ in self.node_types]
        self.latent_dim = latent_dim
        self.proj_in = nn.ModuleDict({k: nn.Linear(d, internal_dim) for k, _, d in self.node_types})
        self.enc_embed = NodeEmbedding(counts, internal_dim, positions)
        self.encoder = nn.ModuleList(Block(internal_dim, num_heads) for _ in range(num_layers))
        self.enc_norm = nn.LayerNorm(internal_dim)
        self.to_stats = nn.Linear(internal_dim, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, internal_dim)
        self.dec_embed = NodeEmbedding(counts, internal_dim, positions)
        self.decoder = nn.ModuleList(Block(internal_dim, num_heads) for _ in range(num_layers))
        self.dec_norm = nn.LayerNorm(internal_dim)
        self.proj_out = nn.ModuleDict(
            {k: nn.Linear(internal_dim, d) for k, _, d in self.node_types}
        )

    @property
    def num_nodes(self) -> int:
        return sum(n for _, n, _ in self.node_types)

    def encode(self, features: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``{key: (B, N_t, D_t)} -> (mu, logvar)``, each ``(B, N, h)``."""
        h = torch.cat(
            [self.proj_in[k](features[k]) for k, _, _ in self.node_types], dim=1
        )  # (B, N, D)
        h = h + self.enc_embed()
        for blk in self.encoder:
            h = blk(h)
        mu, logvar = self.to_stats(self.enc_norm(h)).chunk(2, dim=-1)  # (B, N, h) each
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """``(B, N, h) -> {key: (B, N_t, D_t)}``."""
        h = self.from_latent(z) + self.dec_embed()  # (B, N, D)
        for blk in self.decoder:
            h = blk(h)
        h = self.dec_norm(h)
        out, start = {}, 0
        for k, n, _ in self.node_types:
            out[k] = self.proj_out[k](h[:, start : start + n])
            start += n
        return out

    def forward(
        self, features: Mapping[str, Tensor], sample: bool = True
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        mu, logvar = self.encode(features)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decode(z), mu, logvar


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, sigma^2) || N(0, 1))`` averaged over nodes and latent dims, per sample: ``(B,)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).mean(1)


def reconstruction_error(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
    """Mean squared error over every feature of every node, per sample: ``(B,)``."""
    se = sum(((pred[k] - target[k]) ** 2).flatten(1).sum(1) for k in target)
    n = sum(target[k][0].numel() for k in target)
    return se / n
