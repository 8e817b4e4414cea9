"""Public conversion API: ``compile_layout``, ``from_module``, ``to_state_dict``, ``to_module``."""

from __future__ import annotations

import copy
import importlib
import re
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from .dataflow import Flow, analyse
from .edges import build_edges
from .errors import ArchitectureMismatchError, UnsupportedLayerError, WeightGraphError
from .graph import WeightGraph
from .handlers import LayerDef, NodeGroup, find_handler, qualname
from .handlers.generic import infer_axes
from .handlers.neuralop import densify_spectral
from .layout import Block, GraphLayout, NodeTypeSpec, feature_dtype
from .trace import capture, innermost_layer


def compile_layout(
    module: nn.Module,
    example_inputs: Sequence[Any] | None = None,
    *,
    strict: bool = True,
    trace: str = "auto",
) -> GraphLayout:
    """Trace ``module`` once and compile the :class:`GraphLayout` of its architecture.

    Args:
        module: any ``nn.Module``; it is never modified.
        example_inputs: positional inputs for ``torch.export`` (used only when ``torch.fx`` symbolic
            tracing fails); inferred from the first layer when omitted.
        strict: raise :class:`UnsupportedLayerError` for tensors whose node layout cannot be
            determined; with ``strict=False`` they are carried as opaque tensors instead.
        trace: ``"auto"`` (fx, then export), ``"fx"`` or ``"export"``.
    """
    if not isinstance(module, nn.Module):
        raise WeightGraphError(f"expected a torch.nn.Module, got {type(module).__name__}")
    state = module.state_dict()
    tensor_keys = tuple(k for k, v in state.items() if isinstance(v, Tensor))
    canonical = _canonical_names(module, set(tensor_keys))

    # 1. layers that have a handler (outermost wins: attention claims its out_proj)
    layers: dict[str, LayerDef] = {}
    opaque_modules: list[str] = []
    for path, m in module.named_modules(remove_duplicate=False):
        if any(path == p or path.startswith(p + ".") for p in list(layers) + opaque_modules):
            continue
        fn = find_handler(m)
        if fn is None:
            continue
        try:
            layers[path] = fn(m, path)
        except UnsupportedLayerError:
            if strict:
                raise
            opaque_modules.append(path)

    # 2. data flow
    cap = capture(module, set(layers), example_inputs, method=trace)

    # 3. remaining float tensors: generic layers (axis read off their consumers) or opaque
    claimed = {canonical.get(k, k) for ld in layers.values() for k in ld.claimed}
    nodes_of: dict[str, list] = {}
    for node, key in cap.param_of.items():
        nodes_of.setdefault(canonical.get(key, key), []).append(node)
    generic: dict[str, list[Block]] = {}
    opaque: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for key in tensor_keys:
        canon = canonical.get(key, key)
        if canon != key or canon in claimed:
            continue
        t = state[key]
        owner_path = key.rpartition(".")[0]
        if not (t.is_floating_point() or t.is_complex()):
            opaque[key] = (tuple(t.shape), t.dtype)
            continue
        try:
            if any(owner_path == p or owner_path.startswith(p + ".") for p in opaque_modules):
                raise UnsupportedLayerError(key)
            found = nodes_of.get(key)
            if not found:
                raise UnsupportedLayerError(
                    f"parameter '{key}' of {_module_type(module, owner_path)} is not used in the traced forward "
                    "and no handler covers it, so its output axis is unknown"
                )
            axes = infer_axes(key, found[0], tuple(t.shape), _module_type(module, owner_path))
        except UnsupportedLayerError:
            if strict:
                raise
            opaque[key] = (tuple(t.shape), t.dtype)
            continue
        role = "bias" if key.endswith("bias") else "weight"
        generic.setdefault(owner_path, []).append(
            Block(key, tuple(t.shape), t.dtype, axes, (), role)
        )
        for n in found:
            for user in n.users:
                cap.owner.setdefault(user, owner_path)
    # every op executed inside a generic layer belongs to it (FFTs, slicing, slice assignment, ...),
    # so that its parameter ops form one call whose output can be merged with a parallel skip
    for n in cap.graph.nodes:
        if n.op in ("call_function", "call_method") and n not in cap.owner:
            path = innermost_layer(n, set(generic))
            if path is not None:
                cap.owner[n] = path
    for path, blocks in generic.items():
        counts = {b.num_nodes for b in blocks}
        if len(counts) != 1:
            raise UnsupportedLayerError(
                f"{_module_type(module, path)} at '{path}': its tensors give different node counts "
                f"({', '.join(f'{b.name}: {b.num_nodes}' for b in blocks)}); register a handler for it"
            )
        layers[path] = LayerDef(
            path,
            [NodeGroup(path, counts.pop(), blocks)],
            module_type=_module_type(module, path),
            claimed={b.name for b in blocks},
        )

    # 4. tied tensors are stored once, under their canonical name
    aliases = {k: canonical[k] for k in tensor_keys if canonical.get(k, k) != k}
    for ld in layers.values():
        for g in ld.groups:
            g.blocks = [b for b in g.blocks if canonical.get(b.name, b.name) == b.name]

    flow = analyse(
        cap.graph,
        cap.owner,
        set(cap.param_of),
        cap.inputs,
        {p: ld.groups[-1].num_nodes for p, ld in layers.items()},
        {p: sum(b.width for b in ld.groups[-1].blocks) for p, ld in layers.items()},
    )
    node_types = _node_types(layers, flow)
    edges = build_edges(layers, flow, {nt.path: nt.key for nt in node_types})

    all_blocks = [b for nt in node_types for b in nt.blocks]
    init_kwargs = getattr(module, "_init_kwargs", None)
    return GraphLayout(
        node_types=node_types,
        edges=edges,
        state_keys=tensor_keys,
        aliases=aliases,
        opaque=opaque,
        extra_state={k: copy.deepcopy(v) for k, v in state.items() if not isinstance(v, Tensor)},
        dtype=feature_dtype([b.dtype for b in all_blocks]),
        module_class=qualname(type(module)),
        init_kwargs=copy.deepcopy(init_kwargs) if isinstance(init_kwargs, dict) else None,
        capture=cap.method,
    )


def _module_type(root: nn.Module, path: str) -> str:
    try:
        return type(root.get_submodule(path)).__name__
    except AttributeError:
        return "<unknown>"


def _canonical_names(module: nn.Module, keys: set[str]) -> dict[str, str]:
    """Tied tensors: every name of a shared parameter/buffer -> the first one in the state dict."""
    by_id: dict[int, str] = {}
    out: dict[str, str] = {}
    named = list(module.named_parameters(remove_duplicate=False)) + list(
        module.named_buffers(remove_duplicate=False)
    )
    order = {k: i for i, k in enumerate(module.state_dict().keys())}
    for name, t in sorted(named, key=lambda kv: order.get(kv[0], len(order))):
        if name not in keys:
            continue
        first = by_id.setdefault(id(t), name)
        if first != name:
            out[name] = first
    return out


def _sanitize(path: str, taken: set[str]) -> str:
    key = re.sub(r"[^0-9A-Za-z]+", "_", path).strip("_") or "root"
    base, i = key, 2
    while key in taken:
        key, i = f"{base}_{i}", i + 1
    taken.add(key)
    return key


def _node_types(layers: dict[str, LayerDef], flow: Flow) -> list[NodeTypeSpec]:
    merged_into = flow.merged_into
    first_call = {}
    for c in sorted(flow.calls.values(), key=lambda c: c.id):
        first_call.setdefault(c.path, c.id)
    # data-flow order; layers never called go last, in registration order
    order = sorted(
        (p for p in layers if p not in merged_into),
        key=lambda p: (p not in first_call, first_call.get(p, 0)),
    )
    taken: set[str] = set()
    out = []
    for path in order:
        ld = layers[path]
        for i, g in enumerate(ld.groups):
            blocks = list(g.blocks)
            merged: tuple[str, ...] = ()
            if i == len(ld.groups) - 1 and path in flow.merges:
                merged = tuple(flow.merges[path])
                for sp in merged:
                    blocks += [b for sg in layers[sp].groups for b in sg.blocks]
            out.append(
                NodeTypeSpec(
                    _sanitize(g.path, taken),
                    g.path,
                    ld.module_type,
                    tuple(blocks),
                    g.num_nodes,
                    merged,
                )
            )
    return out


# ---------------------------------------------------------------------------- public API
def from_module(
    module: nn.Module,
    example_inputs: Sequence[Any] | None = None,
    *,
    strict: bool = True,
    layout: GraphLayout | None = None,
    dense_spectral: bool = False,
) -> WeightGraph:
    """Convert any ``nn.Module`` to a :class:`WeightGraph`.

    Args:
        module: the network (left untouched).
        example_inputs: inputs for the ``torch.export`` fallback (inferred when omitted).
        strict: see :func:`compile_layout`.
        layout: a layout compiled for this architecture; skips tracing (fast path for zoos).
        dense_spectral: convert tensor-factorised spectral weights (TFNO) as their dense
            reconstruction (:func:`weightgraph.densify_spectral`), so that factorised and dense
            checkpoints share one graph schema; the graph then round-trips to the dense model.
            By default the factors are carried natively and round-trip exactly.

    Returns:
        The weight graph; ``graph.layout`` is the compiled layout, reusable for other checkpoints.
    """
    if not isinstance(module, nn.Module):
        raise WeightGraphError(
            f"from_module expects a torch.nn.Module, got {type(module).__name__}"
        )
    if dense_spectral:
        module = densify_spectral(module)
    if layout is None:
        layout = compile_layout(module, example_inputs, strict=strict)
    return layout.graph(module)


def to_state_dict(graph: WeightGraph) -> OrderedDict[str, Tensor]:
    """The original tensors, bit for bit, with their names, shapes and dtypes; no template needed.

    Non-tensor state entries (neuraloperator's ``_metadata``) are in ``graph.layout.extra_state``.
    """
    if not isinstance(graph, WeightGraph) or not isinstance(
        getattr(graph, "layout", None), GraphLayout
    ):
        raise WeightGraphError(
            f"to_state_dict expects a WeightGraph made by weightgraph, got {type(graph).__name__}"
        )
    return graph.state_dict()


def to_module(graph: WeightGraph, template: nn.Module | None = None) -> nn.Module:
    """A module carrying the graph's weights.

    Args:
        graph: a :class:`WeightGraph`.
        template: a module of the same architecture; a deep copy of it receives the weights. When
            omitted, the module is rebuilt from the recorded class and init kwargs (neuraloperator
            models record them).

    Raises:
        ArchitectureMismatchError: naming the first layer whose tensors do not fit.
    """
    state = to_state_dict(graph)
    layout: GraphLayout = graph.layout
    if template is None:
        module = rebuild(layout)
    else:
        if not isinstance(template, nn.Module):
            raise WeightGraphError(f"template must be an nn.Module, got {type(template).__name__}")
        module = copy.deepcopy(template)
    _check_fits(layout, module)
    sd = dict(state)
    sd.update(copy.deepcopy(layout.extra_state))
    module.load_state_dict(sd, strict=True)
    return module


def rebuild(layout: GraphLayout) -> nn.Module:
    """Instantiate the recorded model class from its init kwargs (no weights loaded)."""
    if layout.init_kwargs is None or layout.module_class is None:
        raise WeightGraphError(
            f"cannot rebuild {layout.module_class} without a template: its init arguments were not recorded "
            "(only neuraloperator models record them); pass template="
        )
    return build_module(layout.module_class, layout.init_kwargs)


def build_module(module_class: str, init_kwargs: Mapping[str, Any]) -> nn.Module:
    """``module_class(**init_kwargs)`` from an import path; neuraloperator's bookkeeping keys are dropped."""
    mod_name, _, cls_name = module_class.rpartition(".")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    kwargs = copy.deepcopy(dict(init_kwargs))
    for k in ("_version", "_name"):
        kwargs.pop(k, None)
    args = kwargs.pop("args", ())
    return cls(*args, **kwargs)


def _check_fits(layout: GraphLayout, module: nn.Module) -> None:
    target = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    for nt in layout.node_types:
        for b in nt.blocks:
            t = target.get(b.name)
            if t is None or tuple(t.shape) != b.shape or t.dtype != b.dtype:
                got = "missing" if t is None else f"{tuple(t.shape)} {t.dtype}"
                raise ArchitectureMismatchError(
                    f"layer '{nt.path}' does not fit the target module: '{b.name}' is {got}, "
                    f"the graph holds {b.shape} {b.dtype}"
                )
    extra = [k for k in target if k not in layout.state_keys]
    if extra:
        raise ArchitectureMismatchError(
            f"the target module has tensor '{extra[0]}' that the graph does not carry"
        )
    for k in layout.state_keys:
        if k not in target:
            raise ArchitectureMismatchError(
                f"the target module has no tensor '{k}' (layer '{layout.layer_of(k)}')"
            )


__all__ = ["compile_layout", "from_module", "to_state_dict", "to_module", "rebuild", "build_module"]
