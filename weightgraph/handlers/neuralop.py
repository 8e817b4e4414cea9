"""neuraloperator layers (optional dependency: matched by class path, never imported here).

``SpectralConv`` keeps its weight in a tensorly-torch ``DenseTensor`` (``weight.tensor``,
complex, ``(in, out, *modes)``; ``(out, *modes)`` when separable) and a bias ``(out, 1, ...)``.
``SoftGating`` is a per-channel gate ``(1, C, 1, ...)``.
"""

from ..errors import UnsupportedLayerError
from . import NodeGroup, layer, param_block, present, register_handler

_SPECTRAL = [
    f"neuralop.layers.spectral_convolution.{c}"
    for c in ("SpectralConv", "SpectralConv1d", "SpectralConv2d", "SpectralConv3d")
]


@register_handler(*_SPECTRAL)
def spectral_conv(m, path: str):
    names = dict(m.named_parameters())
    if "weight.tensor" not in names:
        bad = next((n for n in names if n.startswith("weight")), "weight")
        raise UnsupportedLayerError(
            f"{path} ({type(m).__name__}): factorised spectral weight '{bad}' "
            f"(factorization={getattr(m, 'factorization', None)!r}) is not supported; use factorization=None "
            "or convert with strict=False to carry it opaquely"
        )
    node_axis = (0,) if getattr(m, "separable", False) else (1,)
    blocks = [param_block(m, path, "weight.tensor", node_axis, role="weight")]
    if present(m, "bias"):
        blocks.append(param_block(m, path, "bias", (0,)))
    return layer(
        m,
        path,
        [NodeGroup(path, m.out_channels, blocks)],
        in_channels=m.in_channels,
        connectivity="diagonal" if getattr(m, "separable", False) else "dense",
    )


@register_handler("neuralop.layers.skip_connections.SoftGating")
def soft_gating(m, path: str):
    c = m.weight.shape[1]
    blocks = [param_block(m, path, "weight", (1,))]
    if present(m, "bias"):
        blocks.append(param_block(m, path, "bias", (1,)))
    return layer(m, path, [NodeGroup(path, c, blocks)], in_channels=c, connectivity="diagonal")
