"""ISNet (Qin et al., "Highly Accurate Dichotomous Image Segmentation", ECCV 2022), with the authors' names.

The U^2-Net encoder/decoder of RSU blocks behind a stride-2 input convolution, trained at 1024 x 1024; the
first side output, upsampled to the input size, is the prediction (there is no fusing ``outconv``).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import RSU4, RSU4F, RSU5, RSU6, RSU7, upsample_like


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class ISNetDIS(nn.Module):
    def __init__(self, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, 64, 3, stride=2, padding=1)
        self.pool_in = _pool()  # present in the authors' module (and so in their checkpoints' structure), unused
        channels = [(64, 32, 64), (64, 32, 128), (128, 64, 256), (256, 128, 512), (512, 256, 512), (512, 256, 512)]
        blocks = [RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F]
        for i, (block, (cin, mid, cout)) in enumerate(zip(blocks, channels), start=1):
            setattr(self, f"stage{i}", block(cin, mid, cout))
            if i < 6:
                setattr(self, f"pool{i}{i + 1}", _pool())
        self.stage5d = RSU4F(1024, 256, 512)
        self.stage4d = RSU4(1024, 128, 256)
        self.stage3d = RSU5(512, 64, 128)
        self.stage2d = RSU6(256, 32, 64)
        self.stage1d = RSU7(128, 16, 64)
        for i, ch in enumerate([64, 64, 128, 256, 512, 512], start=1):
            setattr(self, f"side{i}", nn.Conv2d(ch, out_ch, 3, padding=1))
        self.logits_only = True

    def forward(self, x: torch.Tensor):
        hx = self.conv_in(x)
        encoded = []
        for i in range(1, 7):
            hx = getattr(self, f"stage{i}")(hx)
            encoded.append(hx)
            if i < 6:
                hx = getattr(self, f"pool{i}{i + 1}")(hx)
        decoded = [encoded[-1]]
        for i in range(5, 0, -1):
            skip = encoded[i - 1]
            hx = getattr(self, f"stage{i}d")(torch.cat((upsample_like(hx, skip), skip), 1))
            decoded.append(hx)
        decoded.reverse()  # hx1d, hx2d, ..., hx5d, hx6
        if self.logits_only:
            return upsample_like(self.side1(decoded[0]), x)
        sides = [upsample_like(getattr(self, f"side{i}")(decoded[i - 1]), x) for i in range(1, 7)]
        return tuple(torch.sigmoid(d) for d in sides)
