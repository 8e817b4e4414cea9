"""``nn.MultiheadAttention``: two node types, the input projection (q, k, v rows) and ``out_proj``."""

from torch import nn

from ..errors import UnsupportedLayerError
from . import NodeGroup, join, layer, param_block, present, register_handler


@register_handler(nn.MultiheadAttention)
def multihead_attention(m: nn.MultiheadAttention, path: str):
    if m.bias_k is not None or m.bias_v is not None:
        raise UnsupportedLayerError(
            f"{path} (nn.MultiheadAttention): add_bias_kv=True is not supported (parameters bias_k, bias_v)"
        )
    e = m.embed_dim
    groups = []
    if m._qkv_same_embed_dim:
        blocks = [param_block(m, path, "in_proj_weight", (0,))]
        if present(m, "in_proj_bias"):
            blocks.append(param_block(m, path, "in_proj_bias", (0,)))
        groups.append(NodeGroup(join(path, "in_proj"), 3 * e, blocks))
    else:  # q/k/v projections with their own input widths: one node type each
        if present(m, "in_proj_bias"):
            raise UnsupportedLayerError(
                f"{path} (nn.MultiheadAttention): kdim/vdim != embed_dim together with a bias "
                "is not supported (in_proj_bias spans three node types)"
            )
        for p in ("q", "k", "v"):
            blocks = [param_block(m, path, f"{p}_proj_weight", (0,))]
            groups.append(NodeGroup(join(path, f"{p}_proj"), e, blocks))
    out = [param_block(m.out_proj, join(path, "out_proj"), "weight", (0,))]
    if present(m.out_proj, "bias"):
        out.append(param_block(m.out_proj, join(path, "out_proj"), "bias", (0,)))
    groups.append(NodeGroup(join(path, "out_proj"), e, out))
    return layer(m, path, groups, in_channels=e)
