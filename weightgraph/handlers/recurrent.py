"""``nn.RNN``, ``nn.GRU``, ``nn.LSTM``: one node type per layer and direction, one node per hidden
unit per gate (RNN: ``H`` nodes, GRU: ``3H`` in PyTorch's gate order r, z, n; LSTM: ``4H``, i, f, g, o).
A node's features are its rows of the input weights, the recurrent weights and both biases.
Layer ``k`` receives every direction of layer ``k - 1`` (dense edges), the input reaches every
direction of layer 0 and the output concatenates the directions of the last layer; LSTM projections
(``proj_size > 0``) add a node type ``..._proj`` per layer and direction (``weight_hr``)."""

from torch import nn

from . import NodeGroup, join, layer, param_block, present, register_handler

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


@register_handler(nn.RNN, nn.GRU, nn.LSTM)
def recurrent(m: nn.RNNBase, path: str):
    gates = GATES[m.mode.split("_")[0]]
    dirs = ("", "_reverse") if m.bidirectional else ("",)
    proj = getattr(m, "proj_size", 0)
    groups, internal, first = [], [], []
    previous: list[str] = []
    for k in range(m.num_layers):
        current = []
        for d in dirs:
            suffix = f"_l{k}{d}"
            blocks = [
                param_block(m, path, f"weight_ih{suffix}", (0,)),
                param_block(m, path, f"weight_hh{suffix}", (0,)),
            ]
            if present(m, f"bias_ih{suffix}"):
                blocks += [
                    param_block(m, path, f"bias_ih{suffix}", (0,)),
                    param_block(m, path, f"bias_hh{suffix}", (0,)),
                ]
            g = NodeGroup(join(path, f"l{k}{d}"), gates * m.hidden_size, blocks)
            groups.append(g)
            internal += [(p, g.path) for p in previous]
            if k == 0:
                first.append(g.path)
            out = g.path
            if proj:
                pg = NodeGroup(
                    join(path, f"l{k}{d}_proj"),
                    proj,
                    [param_block(m, path, f"weight_hr{suffix}", (0,))],
                )
                groups.append(pg)
                internal.append((g.path, pg.path))
                out = pg.path
            current.append(out)
        previous = current
    return layer(
        m,
        path,
        groups,
        in_channels=m.input_size,
        internal_edges=internal,
        input_groups=first,
        output_groups=previous,
    )
