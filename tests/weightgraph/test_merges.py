"""Skip merges follow the data flow through the operators inside hand-written layers (FFTs,
slicing, slice assignment, strided views, stacking), not through a handler."""

import torch
import torch.nn.functional as F
from torch import nn

import weightgraph as wg
from tests.weightgraph.zoo import ClassicFNO2d


class SpectralConv1d(nn.Module):  # Li et al.'s fourier_1d.py
    def __init__(self, cin, cout, modes):
        super().__init__()
        self.modes = modes
        self.weights1 = nn.Parameter(
            torch.rand(cin, cout, modes, dtype=torch.cfloat) / (cin * cout)
        )

    def forward(self, x):
        x_ft = torch.fft.rfft(x)
        out_ft = torch.zeros(
            x.shape[0], self.weights1.shape[1], x.size(-1) // 2 + 1, dtype=torch.cfloat
        )
        out_ft[:, :, : self.modes] = torch.einsum(
            "bix,iox->box", x_ft[:, :, : self.modes], self.weights1
        )
        return torch.fft.irfft(out_ft, n=x.size(-1))


class FNO1d(nn.Module):
    def __init__(self, modes=5, width=6):
        super().__init__()
        self.fc0 = nn.Linear(2, width)
        self.conv0, self.w0 = SpectralConv1d(width, width, modes), nn.Conv1d(width, width, 1)
        self.fc1 = nn.Linear(width, 1)

    def forward(self, x):  # (B, X, 2)
        x = self.fc0(x).permute(0, 2, 1)
        x = F.gelu(self.conv0(x) + self.w0(x))
        return self.fc1(x.permute(0, 2, 1))


class HaarConv1d(nn.Module):
    """A WNO-style layer: one-level Haar transform by strided slicing, channel mixing of the
    approximation coefficients, inverse transform by stacking (details pass through)."""

    def __init__(self, cin, cout, size):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(cin, cout, size // 2) / cin)

    def forward(self, x):
        a, d = (x[..., ::2] + x[..., 1::2]) / 2, (x[..., ::2] - x[..., 1::2]) / 2
        a = torch.einsum("bix,iox->box", a, self.weights)
        d = d.mean(1, keepdim=True).expand_as(a)
        return torch.stack([a + d, a - d], dim=-1).flatten(-2)


class WNOBlock(nn.Module):
    def __init__(self, width=4, size=16):
        super().__init__()
        self.lift = nn.Conv1d(1, width, 1)
        self.wave, self.skip = HaarConv1d(width, width, size), nn.Conv1d(width, width, 1)
        self.out = nn.Conv1d(width, 1, 1)

    def forward(self, x):  # (B, 1, X)
        h = self.lift(x)
        return self.out(F.gelu(self.wave(h) + self.skip(h)))


def _check(factory, x, merged, width):
    torch.manual_seed(0)
    net = factory().eval()
    g = wg.from_module(net, x)
    assert merged in g.node_types and g[merged].x.shape[1] == width
    skip_layer = {"conv0": "w0", "wave": "skip"}[merged]
    assert skip_layer not in g.node_types and g.layout[merged].merged_paths == (skip_layer,)
    state = wg.to_state_dict(g)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    clone = wg.to_module(g, factory())
    with torch.no_grad():
        assert torch.equal(clone(*x), net(*x))


def test_classic_fno2d_merges_its_1x1_skip_into_the_spectral_nodes():
    def factory():
        return ClassicFNO2d(modes=4, width=12)

    # 12 inputs x 4 x 4 modes x 2 weight blocks x 2 (re, im) + 12 skip weights + 1 skip bias
    _check(factory, (torch.randn(1, 16, 16, 1),), "conv0", 12 * 4 * 4 * 2 * 2 + 12 + 1)
    g = wg.from_module(factory(), (torch.randn(1, 16, 16, 1),))
    assert g.node_types == ["fc0", "conv0", "conv1", "fc1", "fc2"]


def test_classic_fno1d_merges_too():
    _check(FNO1d, (torch.randn(2, 32, 2),), "conv0", 6 * 5 * 2 + 6 + 1)


def test_a_wavelet_style_block_merges_through_strided_slices_and_stacking():
    _check(WNOBlock, (torch.randn(2, 1, 16),), "wave", 4 * 8 + 4 + 1)
