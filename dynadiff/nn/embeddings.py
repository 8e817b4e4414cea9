"""Embeddings shared by the VAE and the DiT."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TimestepEmbedder(nn.Module):
    """Sinusoidal timestep features followed by an MLP (DiT): ``(B,) -> (B, hidden)``."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    @staticmethod
    def sinusoidal(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.sinusoidal(t, self.freq_dim))


class NodeEmbedding(nn.Module):
    """Learned embedding of where a node sits: its node type (layer) plus its index within the type.

    Args:
        counts: nodes per node type, in order (the concatenation order of the graph's nodes).
        dim: embedding width.
        positions: add a learned per-node embedding (pins node identities; see docs/generator.md).
    """

    def __init__(self, counts: list[int], dim: int, positions: bool = True):
        super().__init__()
        self.register_buffer(
            "type_ids",
            torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)),
            persistent=False,
        )
        self.types = nn.Embedding(len(counts), dim)
        self.positions = nn.Parameter(torch.zeros(sum(counts), dim)) if positions else None

    def forward(self) -> Tensor:  # (N_total, dim)
        out = self.types(self.type_ids)
        return out + self.positions if self.positions is not None else out


class Block(nn.Module):
    """Pre-norm transformer block: ``x + MHA(LN(x))``, ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))
