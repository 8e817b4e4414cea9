"""``nn.Linear`` (and its subclasses) and ``nn.Embedding``."""

from torch import nn

from . import NodeGroup, layer, param_block, present, register_handler


@register_handler(nn.Linear)
def linear(m: nn.Linear, path: str):
    blocks = [param_block(m, path, "weight", (0,))]
    if present(m, "bias"):
        blocks.append(param_block(m, path, "bias", (0,)))
    return layer(m, path, [NodeGroup(path, m.out_features, blocks)], in_channels=m.in_features)


@register_handler(nn.Embedding)
def embedding(m: nn.Embedding, path: str):
    # Output neuron j of an embedding receives weight[v, j] from each (one-hot) token v.
    blocks = [param_block(m, path, "weight", (1,))]
    return layer(m, path, [NodeGroup(path, m.embedding_dim, blocks)], in_channels=m.num_embeddings)
