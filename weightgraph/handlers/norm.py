"""Normalisation layers and per-channel activations: one node per normalised channel/feature.

Running statistics are floating buffers and travel as features; ``num_batches_tracked`` is an
integer counter and travels as an opaque tensor.
"""

from torch import nn

from . import NodeGroup, layer, param_block, present, register_handler

_STATS = ("weight", "bias", "running_mean", "running_var")


@register_handler(nn.modules.batchnorm._NormBase)  # BatchNormNd, InstanceNormNd, SyncBatchNorm
def batch_norm(m: nn.modules.batchnorm._NormBase, path: str):
    blocks = [param_block(m, path, n, (0,)) for n in _STATS if present(m, n)]
    return layer(
        m,
        path,
        [NodeGroup(path, m.num_features, blocks)],
        in_channels=m.num_features,
        connectivity="diagonal",
    )


@register_handler(nn.GroupNorm)
def group_norm(m: nn.GroupNorm, path: str):
    blocks = [param_block(m, path, n, (0,)) for n in ("weight", "bias") if present(m, n)]
    return layer(
        m,
        path,
        [NodeGroup(path, m.num_channels, blocks)],
        in_channels=m.num_channels,
        connectivity="diagonal",
    )


@register_handler(nn.LayerNorm, nn.RMSNorm)
def layer_norm(m: nn.Module, path: str):
    shape = tuple(m.normalized_shape)
    axes = tuple(range(len(shape)))
    blocks = [param_block(m, path, n, axes) for n in ("weight", "bias") if present(m, n)]
    n = 1
    for s in shape:
        n *= s
    return layer(m, path, [NodeGroup(path, n, blocks)], in_channels=n, connectivity="diagonal")


@register_handler(nn.PReLU)
def prelu(m: nn.PReLU, path: str):
    return layer(
        m,
        path,
        [NodeGroup(path, m.num_parameters, [param_block(m, path, "weight", (0,))])],
        in_channels=m.num_parameters,
        connectivity="diagonal",
    )
