"""neuraloperator layers (optional dependency: matched by class path, never imported here).

``SpectralConv`` keeps its weight in a tensorly-torch ``DenseTensor`` (``weight.tensor``,
complex, ``(in, out, *modes)``; ``(out, *modes)`` when separable) and a bias ``(out, 1, ...)``.
``SoftGating`` is a per-channel gate ``(1, C, 1, ...)``.
"""

import copy

from torch import nn

from ..errors import UnsupportedLayerError
from . import NodeGroup, layer, param_block, present, qualname, register_handler

_SPECTRAL = [
    f"neuralop.layers.spectral_convolution.{c}"
    for c in ("SpectralConv", "SpectralConv1d", "SpectralConv2d", "SpectralConv3d")
]


@register_handler(*_SPECTRAL)
def spectral_conv(m, path: str):
    names = dict(m.named_parameters())
    if "weight.tensor" not in names:
        return _factorised(m, path, names)
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


# The factor whose rows belong to output channels, and its node axis, per tensorly-torch format.
_OUTPUT_FACTOR = {
    "TuckerTensor": ("weight.factors.factor_1", (0,)),
    "CPTensor": ("weight.factors.factor_1", (0,)),
    "TTTensor": ("weight.factors.factor_1", (1,)),
}


def _factorised(m, path: str, names: dict):
    """A tensor-factorised weight (TFNO: tucker, cp, tt): node ``o`` carries its row of the output
    factor (and the bias); the core / the other factors, shared by every output channel, form a
    node type ``<path>_factors`` of one node. The factors round-trip exactly, as stored."""
    kind = type(m.weight).__name__
    if kind not in _OUTPUT_FACTOR or getattr(m, "separable", False):
        bad = next((n for n in names if n.startswith("weight")), "weight")
        raise UnsupportedLayerError(
            f"{path} ({type(m).__name__}): spectral weight '{bad}' of type {kind} "
            f"(separable={getattr(m, 'separable', False)}) is not supported; convert with strict=False "
            "to carry it opaquely"
        )
    out_name, axis = _OUTPUT_FACTOR[kind]
    main = [param_block(m, path, out_name, axis, role="weight")]
    if present(m, "bias"):
        main.append(param_block(m, path, "bias", (0,)))
    shared = [
        param_block(m, path, n, (), role="weight")
        for n in names
        if n.startswith("weight.") and n != out_name
    ]
    groups = [NodeGroup(f"{path}_factors", 1, shared), NodeGroup(path, m.out_channels, main)]
    return layer(
        m,
        path,
        groups,
        in_channels=m.in_channels,
        internal_edges=[],
        input_groups=[path],
        output_groups=[path],
    )


def densify_spectral(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose tensor-factorised spectral weights (TFNO: tucker, cp, tt) are
    replaced by their dense reconstruction ``(in, out, *modes)`` complex, so that factorised and dense
    checkpoints of one architecture share one graph schema (the dense FNO's). The copy computes the
    function (it contracts with this tensor, ``implementation="reconstructed"``, to float rounding) and
    records ``factorization=None`` in neuraloperator's init kwargs, so ``rebuild`` makes the dense
    model. The factors themselves are not recoverable from the dense weight."""
    out = copy.deepcopy(module)
    changed = False
    for m in out.modules():
        if qualname(type(m)) in _SPECTRAL and "weight.tensor" not in dict(m.named_parameters()):
            from neuralop.layers.spectral_convolution import get_contract_fun
            from tltorch.factorized_tensors import DenseTensor  # neuraloperator's dependency

            m.weight = DenseTensor(nn.Parameter(m.weight.to_tensor().detach().clone()))
            m.factorization, m.implementation = None, "reconstructed"
            m._contract = get_contract_fun(
                m.weight, implementation="reconstructed", separable=False
            )
            changed = True
    kwargs = getattr(out, "_init_kwargs", None)
    if changed and isinstance(kwargs, dict) and "factorization" in kwargs:
        kwargs["factorization"] = None
    return out


@register_handler("neuralop.layers.skip_connections.SoftGating")
def soft_gating(m, path: str):
    c = m.weight.shape[1]
    blocks = [param_block(m, path, "weight", (1,))]
    if present(m, "bias"):
        blocks.append(param_block(m, path, "bias", (1,)))
    return layer(m, path, [NodeGroup(path, c, blocks)], in_channels=c, connectivity="diagonal")
