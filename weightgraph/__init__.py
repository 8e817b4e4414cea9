"""weightgraph: any ``nn.Module`` as a PyTorch Geometric heterogeneous weight graph, and back, exactly.

>>> import weightgraph, torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> g = weightgraph.from_module(net)
>>> [tuple(g[k].x.shape) for k in g.node_types]
[(8, 4), (2, 9)]
>>> all(torch.equal(a, b) for a, b in zip(weightgraph.to_state_dict(g).values(), net.state_dict().values()))
True
"""

from .binding import Binding
from .canonical import canonicalize, permutation_classes, permute
from .convert import compile_layout, from_module, rebuild, to_module, to_state_dict
from .errors import ArchitectureMismatchError, TraceError, UnsupportedLayerError, WeightGraphError
from .graph import WeightGraph
from .handlers import LayerDef, NodeGroup, param_block, register_handler
from .handlers.neuralop import densify_spectral
from .layout import Block, GraphLayout, NodeTypeSpec

__version__ = "0.1.0"

__all__ = [
    "from_module",
    "to_state_dict",
    "to_module",
    "compile_layout",
    "rebuild",
    "densify_spectral",
    "canonicalize",
    "permute",
    "permutation_classes",
    "WeightGraph",
    "GraphLayout",
    "Binding",
    "NodeTypeSpec",
    "Block",
    "register_handler",
    "LayerDef",
    "NodeGroup",
    "param_block",
    "WeightGraphError",
    "UnsupportedLayerError",
    "TraceError",
    "ArchitectureMismatchError",
]
