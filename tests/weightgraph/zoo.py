"""Small networks covering the layer families and connection patterns weightgraph must handle."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mlp():
    return nn.Sequential(
        nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 2)
    )


class CNNBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.head(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = BasicBlock(8, 8, 1)  # identity skip
        self.layer2 = BasicBlock(8, 16, 2)  # downsample skip (conv + bn)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(F.relu(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(2, 8, 3, padding=1)
        self.enc2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Conv2d(16, 8, 3, padding=1)  # input: cat(up, enc1)
        self.grouped_up = nn.ConvTranspose2d(8, 4, 3, padding=1, groups=2)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(e1))
        d = F.relu(self.dec(torch.cat([self.up(e2), e1], dim=1)))
        return self.out(F.relu(self.grouped_up(d)))


class TinyTransformer(nn.Module):
    def __init__(self, vocab=11, d=16, t=8):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(t, d)
        self.layer = nn.TransformerEncoderLayer(
            d, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.norm(self.layer(self.tok(idx) + self.pos(pos))))


class DepthwiseGN(nn.Module):
    def __init__(self):
        super().__init__()
        self.pw = nn.Conv2d(4, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gn = nn.GroupNorm(2, 8)
        self.grp = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.prelu = nn.PReLU(8)

    def forward(self, x):
        return self.prelu(self.grp(self.gn(self.dw(self.pw(x)))))


def conv1d_net():
    return nn.Sequential(
        nn.Conv1d(2, 8, 5, padding=2),
        nn.InstanceNorm1d(8, affine=True),
        nn.ReLU(),
        nn.Conv1d(8, 4, 3, padding=1),
    )


def conv3d_net():
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 2, 1)
    )


class Tied(nn.Module):
    """Language-model style: the output head shares the embedding matrix."""

    def __init__(self, vocab=13, d=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.tanh(self.mix(self.emb(idx))))


# ---- classic FNO2d (Li et al. 2020 reference code): complex (in, out, m1, m2) parameters + einsum
class SpectralConv2d(nn.Module):
    def __init__(self, cin, cout, m1, m2):
        super().__init__()
        self.m1, self.m2 = m1, m2
        scale = 1 / (cin * cout)
        self.weights1 = nn.Parameter(scale * torch.rand(cin, cout, m1, m2, dtype=torch.cfloat))
        self.weights2 = nn.Parameter(scale * torch.rand(cin, cout, m1, m2, dtype=torch.cfloat))

    def compl_mul2d(self, x, w):
        return torch.einsum("bixy,ioxy->boxy", x, w)

    def forward(self, x):
        b = x.shape[0]
        x_ft = torch.fft.rfft2(x)
        out_ft = torch.zeros(
            b,
            self.weights1.shape[1],
            x.size(-2),
            x.size(-1) // 2 + 1,
            dtype=torch.cfloat,
            device=x.device,
        )
        out_ft[:, :, : self.m1, : self.m2] = self.compl_mul2d(
            x_ft[:, :, : self.m1, : self.m2], self.weights1
        )
        out_ft[:, :, -self.m1 :, : self.m2] = self.compl_mul2d(
            x_ft[:, :, -self.m1 :, : self.m2], self.weights2
        )
        return torch.fft.irfft2(out_ft, s=(x.size(-2), x.size(-1)))


class ClassicFNO2d(nn.Module):
    def __init__(self, modes=4, width=8):
        super().__init__()
        self.fc0 = nn.Linear(3, width)
        self.conv0, self.conv1 = (
            SpectralConv2d(width, width, modes, modes),
            SpectralConv2d(width, width, modes, modes),
        )
        self.w0, self.w1 = nn.Conv2d(width, width, 1), nn.Conv2d(width, width, 1)
        self.fc1, self.fc2 = nn.Linear(width, 16), nn.Linear(16, 1)

    def get_grid(self, shape, device):
        b, sx, sy = shape[0], shape[1], shape[2]
        gx = (
            torch.tensor(np.linspace(0, 1, sx), dtype=torch.float)
            .reshape(1, sx, 1, 1)
            .repeat([b, 1, sy, 1])
        )
        gy = (
            torch.tensor(np.linspace(0, 1, sy), dtype=torch.float)
            .reshape(1, 1, sy, 1)
            .repeat([b, sx, 1, 1])
        )
        return torch.cat((gx, gy), dim=-1).to(device)

    def forward(self, x):  # x: (B, X, Y, 1)
        x = torch.cat((x, self.get_grid(x.shape, x.device)), dim=-1)
        x = self.fc0(x).permute(0, 3, 1, 2)
        x = F.gelu(self.conv0(x) + self.w0(x))
        x = self.conv1(x) + self.w1(x)
        return self.fc2(F.gelu(self.fc1(x.permute(0, 2, 3, 1))))


def neuralop_fno2d():
    from neuralop.models import FNO

    return FNO(n_modes=(4, 4), hidden_channels=8, in_channels=2, out_channels=1, n_layers=2)


def neuralop_fno3d():
    from neuralop.models import FNO

    return FNO(n_modes=(4, 4, 4), hidden_channels=6, in_channels=1, out_channels=1, n_layers=2)


def neuralop_uno():
    from neuralop.models import UNO

    return UNO(
        in_channels=2,
        out_channels=1,
        hidden_channels=8,
        n_layers=3,
        uno_out_channels=[8, 16, 8],
        uno_n_modes=[[4, 4], [4, 4], [4, 4]],
        uno_scalings=[[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]],
        horizontal_skips_map={2: 0},
        channel_mlp_skip="linear",
    )


# name -> (factory, example input factory)
CASES = {
    "mlp": (mlp, lambda: (torch.randn(4, 3),)),
    "cnn_bn": (CNNBN, lambda: (torch.randn(2, 3, 8, 8),)),
    "resnet": (ResNet, lambda: (torch.randn(2, 3, 8, 8),)),
    "unet": (UNet, lambda: (torch.randn(2, 2, 8, 8),)),
    "transformer": (TinyTransformer, lambda: (torch.randint(0, 11, (2, 8)),)),
    "depthwise_gn": (DepthwiseGN, lambda: (torch.randn(2, 4, 8, 8),)),
    "conv1d": (conv1d_net, lambda: (torch.randn(2, 2, 16),)),
    "conv3d": (conv3d_net, lambda: (torch.randn(2, 1, 6, 6, 6),)),
    "tied": (Tied, lambda: (torch.randint(0, 13, (2, 5)),)),
    "classic_fno2d": (ClassicFNO2d, lambda: (torch.randn(2, 16, 16, 1),)),
    "neuralop_fno2d": (neuralop_fno2d, lambda: (torch.randn(2, 2, 16, 16),)),
    "neuralop_fno3d": (neuralop_fno3d, lambda: (torch.randn(1, 1, 8, 8, 8),)),
    "neuralop_uno": (neuralop_uno, lambda: (torch.randn(2, 2, 16, 16),)),
}
