"""Sequence encoding: a weight graph flattened layer by layer into fixed-length tokens.

The baseline representation of the paper's graph-vs-sequence ablation: each node type's
features are flattened row-major, zero-padded to a multiple of ``token_size`` and cut into
tokens, so no token straddles two layers. ``decode(encode(x)) == x`` exactly.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .layout import GraphLayout


class SequenceCodec:
    """Tokenise the features of one architecture.

    Args:
        layout: the architecture's :class:`GraphLayout`, or its node types as ``[(key, N_t, D_t), ...]``
            in graph order.
        token_size: features per token.

    Attributes:
        num_tokens: sequence length ``S``.
        tokens_per_layer: tokens of each node type, in order.
        layer_ids: ``(S,)`` index of the node type each token comes from (for layer embeddings).
    """

    def __init__(self, layout: GraphLayout | Sequence[tuple[str, int, int]], token_size: int):
        if token_size < 1:
            raise ValueError("token_size must be positive")
        if isinstance(layout, GraphLayout):
            layout = [(nt.key, nt.num_nodes, nt.width) for nt in layout.node_types]
        self.node_types = [(str(k), int(n), int(d)) for k, n, d in layout]
        self.token_size = token_size
        self.sizes = [n * d for _, n, d in self.node_types]
        self.tokens_per_layer = [math.ceil(s / token_size) for s in self.sizes]
        self.num_tokens = sum(self.tokens_per_layer)
        self.layer_ids = torch.repeat_interleave(
            torch.arange(len(self.sizes)), torch.tensor(self.tokens_per_layer)
        )

    def encode(self, features: Mapping[str, Tensor]) -> Tensor:
        """``{key: (*B, N_t, D_t)} -> (*B, S, token_size)``."""
        parts = []
        for (key, _, _), size, n_tok in zip(
            self.node_types, self.sizes, self.tokens_per_layer, strict=True
        ):
            x = features[key]
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
        for (key, n, d), size, n_tok in zip(
            self.node_types, self.sizes, self.tokens_per_layer, strict=True
        ):
            chunk = tokens[..., start : start + n_tok, :].reshape(*lead, n_tok * self.token_size)
            out[key] = chunk[..., :size].reshape(*lead, n, d)
            start += n_tok
        return out
