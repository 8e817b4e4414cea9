"""Layer handlers: how the tensors of one layer type map to per-output-node features.

A handler takes ``(module, path)`` and returns a :class:`LayerDef`. Handlers are looked up by
the module's class (walking its MRO), so subclasses inherit them. Register your own with::

    @weightgraph.register_handler(MyLayer)
    def my_layer(module, path):
        blocks = [param_block(module, path, "w", node_axes=(0,))]
        return LayerDef(path, [NodeGroup(path, module.out, blocks)], in_channels=module.inp)

Modules that own parameters but have no handler are handled by :mod:`.generic`, which reads
the output axis of each parameter off the traced op that consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import UnsupportedLayerError
from ..layout import Block


@dataclass
class NodeGroup:
    """The nodes of one node type: ``num_nodes`` nodes whose features are ``blocks``."""

    path: str
    num_nodes: int
    blocks: list[Block]


@dataclass
class LayerDef:
    """What a handler says about one layer.

    Attributes:
        path: module path of the layer.
        groups: node types it produces, in data-flow order (usually one; attention has two).
        in_channels: input channels/features as the layer sees them (for edges), if known.
        connectivity: ``"dense"`` (every input to every node), ``"diagonal"`` (input ``i`` to node
            ``i``: norms, gates) or ``"grouped"`` (block-diagonal with ``groups`` blocks).
        groups_count: number of groups for ``"grouped"``.
        module_type: import path of the module's class.
    """

    path: str
    groups: list[NodeGroup]
    in_channels: int | None = None
    connectivity: str = "dense"
    groups_count: int = 1
    module_type: str = ""
    claimed: set[str] = field(default_factory=set)  # every state key this layer covers
    # edges between this layer's own node types as (source path, destination path), dense;
    # None: a chain in the order of ``groups`` (attention: in_proj -> out_proj)
    internal_edges: list[tuple[str, str]] | None = None
    # node types that receive the layer's input / whose concatenation is its output (None: the
    # first / the last of ``groups``); a bidirectional RNN reads into and out of both directions
    input_groups: list[str] | None = None
    output_groups: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.claimed:
            self.claimed = {b.name for g in self.groups for b in g.blocks}


Handler = Callable[[nn.Module, str], LayerDef]
_REGISTRY: dict[str, Handler] = {}


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_handler(*types: type | str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of the given module classes (or their import paths)."""

    def deco(fn: Handler) -> Handler:
        for t in types:
            _REGISTRY[t if isinstance(t, str) else qualname(t)] = fn
        return fn

    return deco


def find_handler(module: nn.Module) -> Handler | None:
    for cls in type(module).__mro__:
        fn = _REGISTRY.get(qualname(cls))
        if fn is not None:
            return fn
    return None


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def param_block(
    module: nn.Module,
    path: str,
    name: str,
    node_axes: tuple[int, ...],
    role: str | None = None,
    view: tuple[int, ...] = (),
) -> Block:
    """Block for tensor ``module.<name>`` (a dotted name reaches into children)."""
    t = (
        module.get_parameter(name)
        if name in dict(module.named_parameters())
        else module.get_buffer(name)
    )
    if not (t.is_floating_point() or t.is_complex()):
        raise UnsupportedLayerError(
            f"{join(path, name)} has dtype {t.dtype}: only float/complex tensors are node features"
        )
    if role is None:
        role = (
            "bias"
            if name.endswith("bias")
            else ("weight" if isinstance(t, nn.Parameter) else "buffer")
        )
    return Block(join(path, name), tuple(t.shape), t.dtype, tuple(node_axes), tuple(view), role)


def present(module: nn.Module, name: str) -> bool:
    """Whether ``module.<name>`` is a tensor in the state dict (optional biases are ``None``)."""
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return isinstance(obj, torch.Tensor)


def layer(module: nn.Module, path: str, groups: list[NodeGroup], **kw) -> LayerDef:
    claimed = {b.name for g in groups for b in g.blocks}
    return LayerDef(path, groups, module_type=qualname(type(module)), claimed=claimed, **kw)


# Import for their registration side effects.
from . import attention, conv, linear, neuralop, norm, recurrent  # noqa: E402,F401

__all__ = [
    "LayerDef",
    "NodeGroup",
    "register_handler",
    "find_handler",
    "param_block",
    "present",
    "layer",
]
