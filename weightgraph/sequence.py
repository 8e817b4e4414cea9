"""Sequence encoding: a weight graph flattened layer by layer into fixed-length tokens.

The baseline representation of the paper's graph-vs-sequence ablation: each node type's
features are flattened row-major, zero-padded to a multiple of ``token_size`` and cut into
tokens, so no token straddles two layers. ``decode(encode(x)) == x`` exactly.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from .layout import GraphLayout


class SequenceCodec:
    """Tokenise the features of one architecture.

    Attributes:
        num_tokens: sequence length ``S``.
        layer_ids: ``(S,)`` index of the node type each token comes from (for layer embeddings).
    """

    def __init__(self, layout: GraphLayout, token_size: int):
        if token_size < 1:
            raise ValueError("token_size must be positive")
        self.layout, self.token_size = layout, token_size
        self.sizes = [nt.num_nodes * nt.width for nt in layout.node_types]
        self.tokens_per_layer = [math.ceil(s / token_size) for s in self.sizes]
        self.num_tokens = sum(self.tokens_per_layer)
        self.layer_ids = torch.repeat_interleave(
            torch.arange(len(self.sizes)), torch.tensor(self.tokens_per_layer)
        )

    def encode(self, features: Mapping[str, Tensor]) -> Tensor:
        """``{key: (*B, N_t, D_t)} -> (*B, S, token_size)``."""
        parts = []
        for nt, size, n_tok in zip(
            self.layout.node_types, self.sizes, self.tokens_per_layer, strict=True
        ):
            x = features[nt.key]
            flat = x.reshape(*x.shape[:-2], size)
            pad = n_tok * self.token_size - size
            if pad:
                flat = torch.nn.functional.pad(flat, (0, pad))
            parts.append(flat.reshape(*x.shape[:-2], n_tok, self.token_size))
        return torch.cat(parts, dim=-2)

    def decode(self, tokens: Tensor) -> dict[str, Tensor]:
        """``(*B, S, token_size) -> {key: (*B, N_t, D_t)}`` (padding dropped)."""
        lead = tokens.shape[:-2]
        out, start = {}, 0
        for nt, size, n_tok in zip(
            self.layout.node_types, self.sizes, self.tokens_per_layer, strict=True
        ):
            chunk = tokens[..., start : start + n_tok, :].reshape(*lead, n_tok * self.token_size)
            out[nt.key] = chunk[..., :size].reshape(*lead, nt.num_nodes, nt.width)
            start += n_tok
        return out
