"""Compiled per-architecture layout: where every tensor of a state dict lives in the node features.

A :class:`GraphLayout` is built once per architecture (by :func:`weightgraph.compile_layout`)
and then converts any number of checkpoints of that architecture without tracing again:
each node type's features are one ``torch.cat`` of permuted views of its tensors, and the
way back is one slice-reshape-permute per tensor.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from .errors import ArchitectureMismatchError, WeightGraphError

if TYPE_CHECKING:  # pragma: no cover
    from .binding import Binding
    from .graph import WeightGraph

EdgeType = tuple[str, str, str]


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype whose pairs represent ``dtype`` exactly (identity for real dtypes)."""
    return {
        torch.complex64: torch.float32,
        torch.complex128: torch.float64,
        torch.complex32: torch.float16,
    }.get(dtype, dtype)


def feature_dtype(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    """Smallest float dtype that holds every dtype in ``dtypes`` exactly (float32 at least)."""
    out = torch.float32
    for d in dtypes:
        out = torch.promote_types(out, real_dtype(d))
    return out


@dataclass(frozen=True)
class Block:
    """One tensor of the state, laid out as ``(num_nodes, width)`` columns of a node type.

    The tensor of ``shape`` is reshaped to ``view`` (this splits e.g. the group axis of a grouped
    transposed convolution), permuted so that ``node_axes`` come first and flattened: row ``i`` of
    the block is everything that flows *into* node ``i``. Complex tensors are stored as
    (real, imaginary) pairs in the last position.
    """

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    node_axes: tuple[int, ...]
    view: tuple[int, ...] = ()
    role: str = "weight"  # "weight" | "bias" | "buffer": decides how the normaliser treats it

    def __post_init__(self) -> None:
        if not self.view:
            object.__setattr__(self, "view", tuple(self.shape))
        if math.prod(self.view) != math.prod(self.shape):
            raise WeightGraphError(
                f"block {self.name}: view {self.view} does not fit shape {self.shape}"
            )

    @property
    def is_complex(self) -> bool:
        return self.dtype.is_complex

    @property
    def perm(self) -> tuple[int, ...]:
        rest = [a for a in range(len(self.view)) if a not in self.node_axes]
        return tuple(self.node_axes) + tuple(rest)

    @property
    def num_nodes(self) -> int:
        return math.prod(self.view[a] for a in self.node_axes)

    @property
    def fan_in(self) -> int:
        """Number of (complex) entries per node: the product of the non-node axes."""
        return math.prod(self.view[a] for a in self.perm[len(self.node_axes) :])

    @property
    def width(self) -> int:
        return self.fan_in * (2 if self.is_complex else 1)

    def to_features(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        """``(*B, *shape) -> (*B, num_nodes, width)``, a fresh tensor."""
        lead = tuple(t.shape[: t.dim() - len(self.shape)])
        out = torch.empty(lead + (self.num_nodes, self.width), dtype=dtype, device=t.device)
        self.write_features(t, out)
        return out

    def write_features(self, t: Tensor, out: Tensor) -> None:
        """Copy ``t (*B, *shape)`` into the (column) view ``out (*B, num_nodes, width)``: one strided copy."""
        self._node_major(out).copy_(self._permuted(t))

    def from_features(self, f: Tensor) -> Tensor:
        """``(*B, num_nodes, width) -> (*B, *shape)``: a fresh tensor, one strided copy, differentiable."""
        out = torch.empty(tuple(f.shape[:-2]) + self.shape, dtype=self.dtype, device=f.device)
        self._permuted(out).copy_(self._node_major(f))
        return out

    def _permuted(self, t: Tensor) -> Tensor:
        """View of ``t (*B, *shape)`` as ``(*B, *node sizes, *rest sizes[, 2])``."""
        nb = t.dim() - len(self.shape)
        t = t.reshape(tuple(t.shape[:nb]) + self.view)
        perm = tuple(range(nb)) + tuple(nb + a for a in self.perm)
        if self.is_complex:
            t = torch.view_as_real(t)
            perm = perm + (t.dim() - 1,)
        return t.permute(perm)

    def _node_major(self, f: Tensor) -> Tensor:
        """View of features ``(*B, num_nodes, width)`` as ``(*B, *node sizes, *rest sizes[, 2])``."""
        rest = tuple(self.view[a] for a in self.perm[len(self.node_axes) :]) + (
            (2,) if self.is_complex else ()
        )
        nodes = tuple(self.view[a] for a in self.node_axes)
        return _split(_split(f, -1, rest), -1 - len(rest), nodes)


@dataclass(frozen=True)
class NodeTypeSpec:
    """One node type: the nodes of one layer, with the blocks concatenated into its feature."""

    key: str  # PyG node type (no dots)
    path: str  # module path of the layer in the original model
    module_type: str
    blocks: tuple[Block, ...]
    num_nodes: int
    merged_paths: tuple[str, ...] = ()  # skip-path layers whose weights were merged in

    @property
    def width(self) -> int:
        return sum(b.width for b in self.blocks)

    def column_slices(self) -> list[tuple[Block, slice]]:
        out, start = [], 0
        for b in self.blocks:
            out.append((b, slice(start, start + b.width)))
            start += b.width
        return out


@dataclass
class GraphLayout:
    """Everything needed to turn checkpoints of one architecture into weight graphs and back.

    Attributes:
        node_types: node types in data-flow order.
        edges: ``edge_type -> edge_index (2, E)`` (neuron-level, shared by all graphs).
        state_keys: the original state-dict keys, in order (tensors only).
        aliases: tied tensors, ``alias key -> canonical key``.
        opaque: tensors carried as-is (non-float buffers, and unsupported parameters when
            ``strict=False``): ``key -> (shape, dtype)``.
        extra_state: non-tensor state-dict entries (e.g. neuraloperator's ``_metadata``).
        dtype: dtype of the node features.
        module_class: import path of the model class, used to rebuild it without a template.
        init_kwargs: constructor kwargs when known (neuraloperator models record them).
        capture: ``"fx"`` or ``"export"``: how the data flow was captured.
    """

    node_types: list[NodeTypeSpec]
    edges: dict[EdgeType, Tensor]
    state_keys: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)
    opaque: dict[str, tuple[tuple[int, ...], torch.dtype]] = field(default_factory=dict)
    extra_state: dict[str, Any] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32
    module_class: str | None = None
    init_kwargs: dict[str, Any] | None = None
    capture: str = "fx"

    def __post_init__(self) -> None:
        self._by_key = {nt.key: nt for nt in self.node_types}
        self._slices = {nt.key: nt.column_slices() for nt in self.node_types}
        self._expected = {b.name: (b.shape, b.dtype) for nt in self.node_types for b in nt.blocks}
        self._expected.update(self.opaque)

    # ------------------------------------------------------------------ identity
    @property
    def node_keys(self) -> list[str]:
        return [nt.key for nt in self.node_types]

    def __getitem__(self, key: str) -> NodeTypeSpec:
        return self._by_key[key]

    @property
    def num_parameters(self) -> int:
        """Number of scalars carried by node features (complex entries count twice)."""
        return sum(nt.num_nodes * nt.width for nt in self.node_types)

    @property
    def fingerprint(self) -> str:
        """Short hash of the architecture: node types, widths, tensor names, shapes and dtypes."""
        h = hashlib.sha1()
        for nt in self.node_types:
            h.update(f"{nt.key}:{nt.num_nodes}x{nt.width};".encode())
            for b in nt.blocks:
                h.update(f"{b.name}{b.shape}{b.dtype}{b.node_axes}{b.view};".encode())
        for k, (s, d) in sorted(self.opaque.items()):
            h.update(f"opaque:{k}{s}{d};".encode())
        return h.hexdigest()[:16]

    def layer_of(self, name: str) -> str:
        """Module path of the node type that carries state key ``name`` (for error messages)."""
        name = self.aliases.get(name, name)
        for nt in self.node_types:
            if any(b.name == name for b in nt.blocks):
                return nt.path
        return "<opaque>" if name in self.opaque else "<unknown>"

    # ------------------------------------------------------------------ validation
    def check_state(self, state: Mapping[str, Any], where: str = "state dict") -> None:
        """Raise :class:`ArchitectureMismatchError` naming the first key/shape/dtype that differs."""
        tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
        for k in self.state_keys:
            if k not in tensors:
                raise ArchitectureMismatchError(
                    f"{where} has no tensor '{k}' (layer '{self.layer_of(k)}' of this architecture)"
                )
        for k, t in tensors.items():
            canon = self.aliases.get(k, k)
            if canon not in self._expected:
                raise ArchitectureMismatchError(
                    f"{where} has tensor '{k}' that this architecture does not have"
                )
            shape, dtype = self._expected[canon]
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise ArchitectureMismatchError(
                    f"{where}: '{k}' in layer '{self.layer_of(k)}' is {tuple(t.shape)} {t.dtype}, "
                    f"expected {tuple(shape)} {dtype}"
                )

    def check_features(self, features: Mapping[str, Tensor], batched: bool | None = None) -> None:
        for nt in self.node_types:
            if nt.key not in features:
                raise ArchitectureMismatchError(
                    f"node type '{nt.key}' (layer '{nt.path}') is missing"
                )
            x = features[nt.key]
            if x.shape[-2:] != (nt.num_nodes, nt.width):
                raise ArchitectureMismatchError(
                    f"node type '{nt.key}' (layer '{nt.path}') has features of shape {tuple(x.shape)}; "
                    f"this architecture expects (..., {nt.num_nodes}, {nt.width})"
                )
            if batched is not None and (x.dim() == 3) != batched:
                raise WeightGraphError(
                    f"node type '{nt.key}': expected {'3' if batched else '2'}-d features"
                )

    # ------------------------------------------------------------------ state <-> features
    def features(
        self,
        state: Mapping[str, Tensor],
        *,
        check: bool = True,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Node features ``{key: (N_t, D_t)}`` of one state dict (tensors are copied, never shared).

        ``out``: buffers ``{key: (N_t, D_t)}`` to write into instead of allocating (streaming many
        checkpoints through the same memory is then one hot copy per checkpoint).
        """
        if out is not None:
            self.check_features(out, batched=False)
            out = {k: v.unsqueeze(0) for k, v in out.items()}
        return {k: x[0] for k, x in self.stack([state], check=check, out=out).items()}

    def stack(
        self,
        states: Sequence[Mapping[str, Tensor]],
        *,
        check: bool = True,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Batched features ``{key: (B, N_t, D_t)}`` of many state dicts of this architecture.

        One allocation per node type (none with ``out``, buffers ``{key: (B, N_t, D_t)}``); every
        tensor is copied straight into its columns (no stacking).
        """
        if not states:
            raise WeightGraphError("stack needs at least one state dict")
        if check:
            for i, s in enumerate(states):
                self.check_state(s, where="state dict" if len(states) == 1 else f"state dict #{i}")
        if out is not None:
            self.check_features(out, batched=True)
            if any(v.shape[0] != len(states) for v in out.values()):
                raise WeightGraphError(f"out must hold {len(states)} graphs (its leading axis)")
        buffers, out = out, {}
        for nt in self.node_types:
            device = states[0][nt.blocks[0].name].device if nt.blocks else None
            x = (
                buffers[nt.key]
                if buffers is not None
                else torch.empty(
                    (len(states), nt.num_nodes, nt.width), dtype=self.dtype, device=device
                )
            )
            for b, cols in self._slices[nt.key]:
                dst = b._node_major(
                    x[:, :, cols]
                )  # (B, ...): one view per block, indexed per state
                for i, s in enumerate(states):
                    dst[i].copy_(b._permuted(s[b.name].detach()))
            out[nt.key] = x
        return out

    def bind(
        self, module: torch.nn.Module, features: Mapping[str, Tensor] | None = None
    ) -> Binding:
        """Tie ``module`` to feature buffers ``{key: (N_t, D_t)}`` with views built once, so that
        weights move between them without allocating (see :class:`weightgraph.binding.Binding`)."""
        from .binding import Binding

        return Binding(self, module, features)

    def unflatten(self, features: Mapping[str, Tensor], *, check: bool = True) -> dict[str, Tensor]:
        """Tensors ``{state key: (*B, *shape)}`` from features ``(*B, N_t, D_t)``; differentiable.

        Tied tensors appear under every name (the same tensor object); opaque tensors are not
        included (they are not node features). Use this with ``torch.func.functional_call``.
        """
        if check:
            self.check_features(features)
        out: dict[str, Tensor] = {}
        for nt in self.node_types:
            x = features[nt.key]
            for b, cols in self._slices[nt.key]:
                out[b.name] = b.from_features(x[..., cols])
        for alias, canon in self.aliases.items():
            if canon in out:
                out[alias] = out[canon]
        return out

    def state_dict(
        self, features: Mapping[str, Tensor], opaque: Mapping[str, Tensor] | None = None
    ) -> OrderedDict[str, Tensor]:
        """The original state dict (tensors only, original order) from one graph's features."""
        self.check_features(features, batched=False)
        tensors = self.unflatten(features, check=False)
        for k in self.opaque:
            if opaque is None or k not in opaque:
                raise ArchitectureMismatchError(f"opaque tensor '{k}' is missing from the graph")
            tensors[k] = opaque[k].clone()
        for alias, canon in self.aliases.items():
            tensors[alias] = tensors[canon]
        return OrderedDict((k, tensors[k]) for k in self.state_keys)

    # ------------------------------------------------------------------ graphs
    def graph(
        self, source: torch.nn.Module | Mapping[str, Tensor], *, check: bool = True
    ) -> WeightGraph:
        """Build the :class:`WeightGraph` of a module or state dict of this architecture."""
        from .graph import WeightGraph

        state = source.state_dict() if isinstance(source, torch.nn.Module) else source
        if not isinstance(state, Mapping):
            raise WeightGraphError(
                f"expected an nn.Module or a state dict, got {type(source).__name__}"
            )
        features = self.features(state, check=check)
        opaque = {k: state[k].detach().clone() for k in self.opaque}
        return WeightGraph.from_features(self, features, opaque)

    def graphs_from_stack(
        self, features: Mapping[str, Tensor], opaque: Sequence[Mapping[str, Tensor]] | None = None
    ) -> list[WeightGraph]:
        """Graphs from batched features ``{key: (B, N_t, D_t)}`` (e.g. generated weights)."""
        from .graph import WeightGraph

        self.check_features(features, batched=True)
        b = next(iter(features.values())).shape[0]
        if self.opaque and opaque is None:
            raise WeightGraphError(
                "this architecture has opaque tensors: pass them for every graph"
            )
        return [
            WeightGraph.from_features(
                self, {k: v[i] for k, v in features.items()}, dict(opaque[i]) if opaque else {}
            )
            for i in range(b)
        ]


def _split(x: Tensor, dim: int, sizes: tuple[int, ...]) -> Tensor:
    """View dim ``dim`` (of size ``prod(sizes)``) as ``sizes``; ``()`` squeezes a size-1 dim."""
    if len(sizes) == 1:
        return x
    return x.squeeze(dim) if not sizes else x.unflatten(dim, sizes)
