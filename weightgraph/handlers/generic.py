"""Layers without a handler: read each parameter's output axis off the op that consumes it.

"The output axis comes from how the op uses the weight": ``einsum`` (the weight's subscripts that
reach the output and appear in no other operand), ``linear``/``conv`` (axis 0), ``matmul``
(last axis of a right operand, first of a left one) and broadcasting elementwise ops (the one
axis longer than 1). Anything else is unsupported and raises, naming the module and tensor.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx

from ..errors import UnsupportedLayerError

_LINEAR = {"linear", "conv1d", "conv2d", "conv3d", "convolution", "_convolution"}
_MATMUL = {"matmul", "mm", "bmm", "__matmul__"}
_ELEMENTWISE = {
    "add",
    "add_",
    "sub",
    "sub_",
    "mul",
    "mul_",
    "div",
    "div_",
    "__add__",
    "__radd__",
    "__mul__",
    "__rmul__",
    "__sub__",
    "__rsub__",
    "__truediv__",
    "__iadd__",
    "__imul__",
}
# Ops that only re-label a tensor: the consumer of their result sees the parameter unchanged.
_ALIAS = {"alias", "detach", "clone", "contiguous", "to", "_to_copy", "lift_fresh_copy", "type_as"}


def op_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return str(t)
    if isinstance(t, torch._ops.OpOverload):
        return t.overloadpacket.__name__
    if t is operator.matmul:
        return "matmul"
    return getattr(t, "__name__", str(t))


def _einsum_axes(node: fx.Node, param: fx.Node) -> tuple[int, ...] | None:
    eq = node.args[0]
    ops = list(node.args[1]) if isinstance(node.args[1], (list, tuple)) else list(node.args[1:])
    if not isinstance(eq, str) or "->" not in eq or "..." in eq or param not in ops:
        return None
    lhs, rhs = eq.replace(" ", "").split("->")
    subs = lhs.split(",")
    pos = ops.index(param)
    others = set("".join(s for i, s in enumerate(subs) if i != pos))
    axes = tuple(i for i, c in enumerate(subs[pos]) if c in rhs and c not in others)
    return axes or None


def consumer_axes(node: fx.Node, param: fx.Node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Node axes of tensor ``param`` as used by op ``node``; ``None`` when not understood."""
    name = op_name(node)
    if name == "einsum":
        return _einsum_axes(node, param)
    if name in _LINEAR and param in node.args[1:3]:
        return (0,)
    if name in _MATMUL and len(node.args) >= 2 and len(shape) >= 2:
        return (len(shape) - 1,) if node.args[1] is param else (len(shape) - 2,)
    if name in _ELEMENTWISE:
        big = tuple(i for i, s in enumerate(shape) if s > 1)
        return big if len(big) <= 1 else None
    return None


def infer_axes(
    key: str, node: fx.Node, shape: tuple[int, ...], module_type: str
) -> tuple[int, ...]:
    """Node axes of a parameter from all its (alias-resolved) consumers; they must agree."""
    found: set[tuple[int, ...]] = set()
    frontier = [node]
    while frontier:
        n = frontier.pop()
        for user in n.users:
            if op_name(user) in _ALIAS:
                frontier.append(user)
                continue
            found.add(consumer_axes(user, n, shape))
    if len(found) == 1 and None not in found:
        return found.pop()
    how = ", ".join(sorted({op_name(u) for u in node.users})) or "nothing (unused)"
    raise UnsupportedLayerError(
        f"cannot lay out parameter '{key}' of {module_type}: it is consumed by {how}, whose output axis "
        "weightgraph cannot determine. Register a handler for the module "
        "(weightgraph.register_handler) or convert with strict=False to carry it opaquely."
    )
