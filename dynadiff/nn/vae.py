"""Weight VAE (paper section 3.1.2, appendix G): one latent per token, no pooling.

A weight graph becomes a sequence of ``T`` tokens of width ``D`` in one of three representations
(``representation``; docs/benchmarks.md compares them):

* ``graph`` (the paper's): one token per node, from a linear projection per node type of the node's
  features ``(B, N_t, D_t)``; ``K`` pre-norm attention blocks across all nodes; edges unused.
* ``sequence`` (the paper's Table 9 baseline): the features flattened layer by layer
  (:class:`weightgraph.sequence.SequenceCodec`) and cut into tokens of ``token_size`` values (a
  token never straddles two layers), one shared projection; ``K`` attention blocks.
* ``message_passing``: node tokens as in ``graph``; each of the ``K`` blocks first passes messages
  along the weight graph's edges, both ways, with the relation as edge feature (PyG
  ``TransformerConv``), then attends globally across all nodes (``global_attention=False``: an MLP
  instead).
* ``raw`` (single-stage diffusion, the paper's Table 5 ablation): no VAE; the latent tokens are the
  ``sequence`` tokens of the normalised weights themselves (:class:`RawWeights`).

Every token gets a learned embedding of its layer plus one of its position (``positions``). A head
maps each token to ``(mu, logvar)`` of width ``h``. The decoder (independent weights) runs
``h -> D``, embeddings, ``K`` blocks and the inverse projections back to node features.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from weightgraph.sequence import SequenceCodec

from .embeddings import Block, NodeEmbedding

VAE_PRESETS = {  # internal width D, latent width h, heads, attention blocks K
    "paper": dict(internal_dim=1024, latent_dim=512, num_heads=8, num_layers=4),
    "small": dict(internal_dim=128, latent_dim=16, num_heads=4, num_layers=2),
    "tiny": dict(internal_dim=32, latent_dim=8, num_heads=2, num_layers=1),
}
REPRESENTATIONS = ("graph", "sequence", "message_passing", "raw")
NodeTypes = Sequence[tuple[str, int, int]]
Edges = Mapping[tuple[str, str, str], Tensor]


def default_token_size(node_types: NodeTypes) -> int:
    """The sequence token size that gives about as many tokens as the graph has nodes (same compute)."""
    values = sum(n * d for _, n, d in node_types)
    return math.ceil(values / sum(n for _, n, _ in node_types))


def token_counts(
    node_types: NodeTypes, representation: str = "graph", token_size: int | None = None
) -> list[int]:
    """Tokens per node type, in graph order: ``N_t`` for node tokens, the codec's tokens for
    ``sequence`` and ``raw``."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    if representation in ("sequence", "raw"):
        return SequenceCodec(
            node_types, token_size or default_token_size(node_types)
        ).tokens_per_layer
    return [int(n) for _, n, _ in node_types]


def flat_edges(node_types: NodeTypes, edges: Edges) -> tuple[Tensor, Tensor, list[str]]:
    """The weight graph's edges in both directions over one node index (node types concatenated).

    Returns ``edge_index (2, 2E)``, ``kinds (2E,)`` (``2 * relation + reversed``) and the relation names.
    """
    offset, start = {}, 0
    for key, n, _ in node_types:
        offset[key] = start
        start += n
    relations = sorted({rel for _, rel, _ in edges})
    index, kinds = [], []
    for (src, rel, dst), ei in sorted(edges.items()):
        if src not in offset or dst not in offset:
            raise ValueError(f"edge type {(src, rel, dst)} names a node type the VAE does not have")
        fwd = torch.stack([ei[0] + offset[src], ei[1] + offset[dst]])
        r = 2 * relations.index(rel)
        index += [fwd, fwd.flip(0)]
        kinds += [torch.full((ei.shape[1],), r), torch.full((ei.shape[1],), r + 1)]
    if not index:
        raise ValueError("representation='message_passing' needs a weight graph with edges")
    return torch.cat(index, 1).long(), torch.cat(kinds).long(), relations


class GraphBlock(nn.Module):
    """``x + TransformerConv(LN(x))`` along the weight graph's edges, then a global attention block
    (or an MLP block when ``global_attention=False``). ``x: (B, N, D)``."""

    def __init__(self, dim: int, heads: int, num_kinds: int, global_attention: bool = True):
        super().__init__()
        from torch_geometric.nn import TransformerConv

        self.norm = nn.LayerNorm(dim)
        self.kind = nn.Embedding(num_kinds, dim)
        self.conv = TransformerConv(dim, dim // heads, heads=heads, edge_dim=dim)
        self.out = Block(dim, heads) if global_attention else MLPBlock(dim)

    def forward(self, x: Tensor, edge_index: Tensor, kinds: Tensor) -> Tensor:
        b, n, d = x.shape
        shift = (torch.arange(b, device=x.device) * n).repeat_interleave(edge_index.shape[1])
        ei = edge_index.repeat(1, b) + shift  # (2, B * E): the B graphs as one disjoint graph
        msg = self.conv(self.norm(x).reshape(b * n, d), ei, self.kind(kinds).repeat(b, 1))
        return self.out(x + msg.reshape(b, n, d))


class MLPBlock(nn.Module):
    """``x + MLP(LN(x))``."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(self.norm(x))


class WeightVAE(nn.Module):
    """VAE over weight-graph features.

    Args:
        node_types: ``[(key, N_t, D_t), ...]`` in graph order (``GraphLayout.node_types``).
        internal_dim, latent_dim, num_heads, num_layers: D, h, heads, K.
        positions: learned per-token position embeddings (see docs/generator.md on permutations).
        representation: ``graph`` | ``sequence`` | ``message_passing`` (module docstring).
        token_size: ``sequence`` only; default :func:`default_token_size`.
        edges: ``message_passing`` only: ``GraphLayout.edges``.
        global_attention: ``message_passing`` only: attend across all nodes after each message pass.
    """

    def __init__(
        self,
        node_types: NodeTypes,
        internal_dim: int = 128,
        latent_dim: int = 16,
        num_heads: int = 4,
        num_layers: int = 2,
        positions: bool = True,
        representation: str = "graph",
        token_size: int | None = None,
        edges: Edges | None = None,
        global_attention: bool = True,
    ):
        super().__init__()
        self.node_types = [(k, int(n), int(d)) for k, n, d in node_types]
        self.representation = representation
        self.token_counts = token_counts(self.node_types, representation, token_size)
        self.latent_dim = latent_dim
        self.codec = None
        if representation == "sequence":
            self.codec = SequenceCodec(
                self.node_types, token_size or default_token_size(self.node_types)
            )
            widths = {"token": self.codec.token_size}
        else:
            widths = {k: d for k, _, d in self.node_types}
        if representation == "message_passing":
            if edges is None:
                raise ValueError("representation='message_passing' needs the weight graph's edges")
            edge_index, kinds, relations = flat_edges(self.node_types, edges)
            self.register_buffer("edge_index", edge_index, persistent=False)
            self.register_buffer("edge_kinds", kinds, persistent=False)

            def blocks() -> nn.ModuleList:
                return nn.ModuleList(
                    GraphBlock(internal_dim, num_heads, 2 * len(relations), global_attention)
                    for _ in range(num_layers)
                )
        else:

            def blocks() -> nn.ModuleList:
                return nn.ModuleList(Block(internal_dim, num_heads) for _ in range(num_layers))

        # created in this order so that a seed gives the same initial weights as earlier releases
        self.proj_in = nn.ModuleDict({k: nn.Linear(d, internal_dim) for k, d in widths.items()})
        self.enc_embed = NodeEmbedding(self.token_counts, internal_dim, positions)
        self.encoder = blocks()
        self.enc_norm = nn.LayerNorm(internal_dim)
        self.to_stats = nn.Linear(internal_dim, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, internal_dim)
        self.dec_embed = NodeEmbedding(self.token_counts, internal_dim, positions)
        self.decoder = blocks()
        self.dec_norm = nn.LayerNorm(internal_dim)
        self.proj_out = nn.ModuleDict({k: nn.Linear(internal_dim, d) for k, d in widths.items()})

    @property
    def num_tokens(self) -> int:
        """``T``: latents per weight graph (nodes, or sequence tokens)."""
        return sum(self.token_counts)

    def _mix(self, blocks: nn.ModuleList, h: Tensor) -> Tensor:
        for blk in blocks:
            h = blk(h, self.edge_index, self.edge_kinds) if isinstance(blk, GraphBlock) else blk(h)
        return h

    def encode(self, features: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``{key: (B, N_t, D_t)} -> (mu, logvar)``, each ``(B, T, h)``."""
        if self.codec is not None:
            h = self.proj_in["token"](self.codec.encode(features))  # (B, T, D)
        else:
            h = torch.cat([self.proj_in[k](features[k]) for k, _, _ in self.node_types], dim=1)
        h = self._mix(self.encoder, h + self.enc_embed())
        mu, logvar = self.to_stats(self.enc_norm(h)).chunk(2, dim=-1)  # (B, T, h) each
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """``(B, T, h) -> {key: (B, N_t, D_t)}``."""
        h = self.dec_norm(self._mix(self.decoder, self.from_latent(z) + self.dec_embed()))
        if self.codec is not None:
            return self.codec.decode(self.proj_out["token"](h))
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


class RawWeights(nn.Module):
    """The identity "VAE" of single-stage diffusion: ``encode`` cuts the normalised features into
    sequence tokens ``(B, S, token_size)`` (``logvar`` at its floor: no posterior noise), ``decode``
    puts them back. No parameters; the DiT diffuses the weights themselves."""

    representation = "raw"

    def __init__(self, node_types: NodeTypes, token_size: int | None = None):
        super().__init__()
        self.node_types = [(k, int(n), int(d)) for k, n, d in node_types]
        self.codec = SequenceCodec(
            self.node_types, token_size or default_token_size(self.node_types)
        )
        self.token_counts = self.codec.tokens_per_layer
        self.latent_dim = self.codec.token_size

    @property
    def num_tokens(self) -> int:
        return sum(self.token_counts)

    def encode(self, features: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``{key: (B, N_t, D_t)} -> (tokens, logvar)``, each ``(B, S, token_size)``."""
        z = self.codec.encode(features)
        return z, torch.full_like(z, -30.0)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        return self.codec.decode(z)

    def forward(self, features: Mapping[str, Tensor], sample: bool = True):
        mu, logvar = self.encode(features)
        return self.decode(mu), mu, logvar


@torch.no_grad()
def encode_zoo(vae: WeightVAE, feats_n: Mapping[str, Tensor], chunk: int = 32) -> Tensor:
    """Posterior-mean latents ``(N_experts, N_tokens, h)`` of normalised weight features
    ``{key: (N_experts, N_t, D_t)}``, encoded ``chunk`` experts at a time."""
    n = next(iter(feats_n.values())).shape[0]
    return torch.cat(
        [
            vae.encode({k: v[s : s + chunk] for k, v in feats_n.items()})[0]
            for s in range(0, n, chunk)
        ]
    )


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, sigma^2) || N(0, 1))`` averaged over tokens and latent dims, per sample: ``(B,)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).mean(1)


def reconstruction_error(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
    """Mean squared error over every feature of every node, per sample: ``(B,)``."""
    se = sum(((pred[k] - target[k]) ** 2).flatten(1).sum(1) for k in target)
    n = sum(target[k][0].numel() for k in target)
    return se / n
