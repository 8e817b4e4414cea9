"""Capture a module's data flow as an fx graph: ``torch.fx`` symbolic tracing, else ``torch.export``.

Both paths give an ``fx.Graph`` plus two maps the rest of the library needs:

* ``param_of``: graph node -> state-dict key, for nodes that *are* a parameter/buffer;
* ``owner``: op node -> module path of the layer that executes it.

Layers with a handler are kept as leaves by the fx tracer (one ``call_module`` node); under
``torch.export`` their ops are recognised from each node's ``nn_module_stack``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.fx as fx
from torch import nn

from .errors import TraceError, WeightGraphError


@dataclass
class Capture:
    graph: fx.Graph
    method: str  # "fx" | "export"
    param_of: dict[fx.Node, str] = field(default_factory=dict)
    owner: dict[fx.Node, str] = field(default_factory=dict)
    inputs: list[fx.Node] = field(default_factory=list)


_STACK_PREFIX = re.compile(r"^(L\['self'\]\.?|L__self___?)")


def _stack_paths(node: fx.Node) -> list[str]:
    stack = node.meta.get("nn_module_stack") or {}
    out = []
    for v in stack.values():
        path = v[0] if isinstance(v, tuple) else str(v)
        out.append(_STACK_PREFIX.sub("", path))
    return out


def innermost_layer(node: fx.Node, layer_paths: set[str]) -> str | None:
    for path in reversed(_stack_paths(node)):
        if path in layer_paths:
            return path
    return None


class _LeafTracer(fx.Tracer):
    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaves:
            return True
        # torch.nn modules are leaves by default; trace into those holding tensors we must place
        has_state = next(m.parameters(), None) is not None or next(m.buffers(), None) is not None
        return super().is_leaf_module(m, qualname) and not has_state


def capture(
    module: nn.Module, handled: set[str], example_inputs: Sequence[Any] | None, method: str = "auto"
) -> Capture:
    """Trace ``module`` keeping the ``handled`` layer paths as units.

    Args:
        module: the network.
        handled: module paths of layers that have a handler (kept as leaves).
        example_inputs: positional inputs, needed only for the ``torch.export`` fallback
            (inferred when ``None``, see :func:`infer_example_inputs`).
        method: ``"auto"`` (fx, then export), ``"fx"`` or ``"export"``.
    """
    errors = []
    if method in ("auto", "fx"):
        try:
            return _capture_fx(module, handled)
        except Exception as e:  # noqa: BLE001 - fx raises many types; we report them all
            errors.append(f"torch.fx.symbolic_trace: {type(e).__name__}: {e}")
    inferred = example_inputs is None
    if method in ("auto", "export"):
        try:
            if example_inputs is None:
                example_inputs = infer_example_inputs(module)
            return _capture_export(module, handled, tuple(example_inputs))
        except WeightGraphError:
            raise
        except Exception as e:  # noqa: BLE001
            hint = ""
            if inferred and example_inputs is not None:
                shapes = [tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)]
                hint = f" (with an inferred example input of shape {shapes}; pass example_inputs=... to fix)"
            errors.append(f"torch.export.export{hint}: {type(e).__name__}: {str(e)[:400]}")
    raise TraceError(
        f"could not capture the data flow of {type(module).__name__}:\n  " + "\n  ".join(errors)
    )


def _capture_fx(module: nn.Module, handled: set[str]) -> Capture:
    tracer = _LeafTracer(handled)
    graph = tracer.trace(module)
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(dict(module.named_buffers(remove_duplicate=False)))
    cap = Capture(graph, "fx")
    for n in graph.nodes:
        if n.op == "placeholder":
            cap.inputs.append(n)
        elif n.op == "get_attr" and n.target in tensors:
            cap.param_of[n] = n.target
        elif n.op == "call_module" and n.target in handled:
            cap.owner[n] = n.target
        elif n.op in ("call_function", "call_method"):
            path = innermost_layer(n, handled)
            if path is not None:
                cap.owner[n] = path
    return cap


def _capture_export(module: nn.Module, handled: set[str], args: tuple) -> Capture:
    ep = torch.export.export(module, args, strict=False)
    sig = ep.graph_signature
    names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    cap = Capture(ep.graph, "export")
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            if n.name in names:
                cap.param_of[n] = names[n.name]
            elif n.name in sig.user_inputs:
                cap.inputs.append(n)
        elif n.op == "call_function":
            path = innermost_layer(n, handled)
            if path is not None:
                cap.owner[n] = path
    return cap


# ---------------------------------------------------------------------------- example inputs
_SIZES = (8, 16, 32, 64)


def infer_example_inputs(module: nn.Module) -> tuple[torch.Tensor, ...]:
    """A small input the module accepts, from its first parameterised layer.

    Handles neuraloperator models (``in_channels`` and ``n_modes`` recorded at init), ``Linear``,
    ``ConvNd`` and ``Embedding``. Candidate sizes are checked on a meta-device copy, so the
    module itself never runs (and BatchNorm statistics never move).
    """
    first = next(
        (
            m
            for m in module.modules()
            if next(m.parameters(recurse=False), None) is not None or _is_neuralop_model(m)
        ),
        None,
    )
    kw = getattr(module, "_init_kwargs", None)
    if (
        not isinstance(kw, dict)
        and hasattr(module, "in_channels")
        and hasattr(module, "uno_n_modes")
    ):
        kw = {
            "in_channels": module.in_channels,
            "uno_n_modes": module.uno_n_modes,
        }  # neuraloperator UNO
    try:
        p = next(module.parameters())
        dtype = p.dtype if p.is_floating_point() else torch.float32
        device = p.device
    except StopIteration:
        dtype, device = torch.float32, torch.device("cpu")
    candidates: list[tuple[int, ...]] = []
    long_input = False
    if isinstance(kw, dict) and "in_channels" in kw:
        modes = kw.get("n_modes") or (kw.get("uno_n_modes") or [[16]])[0]
        nd = len(modes)
        base = max(8, 2 * max(int(m) for m in modes))
        candidates = [
            (1, kw["in_channels"]) + (s,) * nd for s in sorted({base, 2 * base, 4 * base, 64})
        ]
    elif isinstance(first, nn.Linear):
        candidates = [(2, first.in_features)]
    elif isinstance(first, nn.modules.conv._ConvNd):
        nd = first.weight.dim() - 2
        cin = first.in_channels
        candidates = [(1, cin) + (s,) * nd for s in _SIZES] + [(1, cin) + (28,) * nd]
    elif isinstance(first, nn.Embedding):
        candidates, long_input = [(1, 8)], True
    inputs = [
        torch.randint(0, 2, s) if long_input else torch.randn(s, dtype=dtype) for s in candidates
    ]
    for x in inputs:
        if _runs_on_meta(module, x):
            return (x.to(device),)
    if inputs:  # some ops have no meta kernel: let torch.export judge the first candidate
        return (inputs[0].to(device),)
    raise WeightGraphError(
        f"cannot infer an example input for {type(module).__name__} "
        f"(first parameterised layer: {type(first).__name__ if first is not None else None}); "
        "pass example_inputs=(tensor, ...) to from_module / compile_layout"
    )


def _is_neuralop_model(m: nn.Module) -> bool:
    return isinstance(getattr(m, "_init_kwargs", None), dict)


def _runs_on_meta(module: nn.Module, x: torch.Tensor) -> bool:
    try:
        meta = copy.deepcopy(module).to("meta")
        with torch.no_grad():
            meta(x.to("meta"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not this size"
        return False
