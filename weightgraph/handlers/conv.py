"""Convolutions: ``nn.ConvNd`` and ``nn.ConvTransposeNd`` for any N and any groups."""

from torch import nn

from . import NodeGroup, layer, param_block, present, register_handler


@register_handler(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(m: nn.modules.conv._ConvNd, path: str):
    # weight: (C_out, C_in / groups, *kernel) -> node = output channel.
    blocks = [param_block(m, path, "weight", (0,))]
    if present(m, "bias"):
        blocks.append(param_block(m, path, "bias", (0,)))
    return layer(
        m,
        path,
        [NodeGroup(path, m.out_channels, blocks)],
        in_channels=m.in_channels,
        connectivity="grouped" if m.groups > 1 else "dense",
        groups_count=m.groups,
    )


@register_handler(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(m: nn.modules.conv._ConvTransposeNd, path: str):
    # weight: (C_in, C_out / groups, *kernel). Output channel o = g * (C_out/groups) + j reads
    # weight[g * C_in/groups : (g+1) * C_in/groups, j]: view as (groups, C_in/g, C_out/g, *k)
    # and take (group, j) as the node axes.
    g = m.groups
    k = tuple(m.weight.shape[2:])
    view = (g, m.in_channels // g, m.out_channels // g) + k
    blocks = [param_block(m, path, "weight", (0, 2), view=view)]
    if present(m, "bias"):
        blocks.append(param_block(m, path, "bias", (0,)))
    return layer(
        m,
        path,
        [NodeGroup(path, m.out_channels, blocks)],
        in_channels=m.in_channels,
        connectivity="grouped" if g > 1 else "dense",
        groups_count=g,
    )
