"""A module bound to node-feature buffers: weights move between them at memory speed.

Converting through :meth:`GraphLayout.graph` and :meth:`GraphLayout.state_dict` allocates fresh
tensors and rebuilds every strided view on each call; on a CPU that costs more than the copy itself
(fresh pages, Python per tensor). When the same module is loaded with many weight sets (a harness
scoring generated experts, a zoo streamed through one model), bind it once::

    b = layout.bind(expert)             # views of expert's tensors and of b.features, built once
    for sample in generated:            # {key: (N_t, D_t)}
        b.load(sample)                  # one strided copy per tensor, into the expert's own storage
        ...
    feats = b.read()                    # the expert's weights as node features (b.features)

Nothing is allocated after binding. Moving the module (``.to(device)``) or replacing a parameter's
storage invalidates the views: bind again after that (:meth:`Binding.check` says when).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor, nn

from .errors import ArchitectureMismatchError, WeightGraphError

if TYPE_CHECKING:  # pragma: no cover
    from .layout import GraphLayout


class Binding:
    """Precomputed views between ``module``'s tensors and feature buffers ``{key: (N_t, D_t)}``.

    Args:
        layout: the architecture's compiled layout.
        module: a module of that architecture (its state dict must match the layout).
        features: buffers to bind (shapes ``(N_t, D_t)``); allocated with the layout's dtype on
            the module's device when omitted.
    """

    def __init__(
        self,
        layout: GraphLayout,
        module: nn.Module,
        features: Mapping[str, Tensor] | None = None,
    ):
        if not isinstance(module, nn.Module):
            raise WeightGraphError(f"bind expects an nn.Module, got {type(module).__name__}")
        state = module.state_dict()
        layout.check_state(state, where=f"module {type(module).__name__}")
        self.layout, self.module = layout, module
        device = next((t.device for t in state.values() if isinstance(t, Tensor)), None)
        if features is None:
            features = {
                nt.key: torch.empty(nt.num_nodes, nt.width, dtype=layout.dtype, device=device)
                for nt in layout.node_types
            }
        layout.check_features(features, batched=False)
        self.features = dict(features)
        self._storage = {k: state[k].data_ptr() for k in layout.state_keys}
        # (view into the features, view of the module's tensor) per block, built once
        self._pairs = [
            (b._node_major(self.features[nt.key][:, cols]), b._permuted(state[b.name]))
            for nt in layout.node_types
            for b, cols in layout._slices[nt.key]
        ]

    def check(self) -> None:
        """Raise if the module's tensors no longer live where they were bound."""
        state = self.module.state_dict()
        for k, ptr in self._storage.items():
            if state[k].data_ptr() != ptr:
                raise ArchitectureMismatchError(
                    f"tensor '{k}' of the bound module was replaced (moved or reassigned) after "
                    "binding; call layout.bind(module) again"
                )

    @torch.no_grad()
    def read(self) -> dict[str, Tensor]:
        """Copy the module's weights into the bound features and return them ``{key: (N_t, D_t)}``."""
        for feat, tensor in self._pairs:
            feat.copy_(tensor)
        return self.features

    @torch.no_grad()
    def write(self) -> nn.Module:
        """Copy the bound features into the module's tensors (in place) and return the module."""
        for feat, tensor in self._pairs:
            tensor.copy_(feat)
        return self.module

    @torch.no_grad()
    def load(self, features: Mapping[str, Tensor]) -> nn.Module:
        """Copy ``features {key: (N_t, D_t)}`` into the bound buffers, then into the module."""
        self.layout.check_features(features, batched=False)
        for k, buf in self.features.items():
            buf.copy_(features[k])
        return self.write()
