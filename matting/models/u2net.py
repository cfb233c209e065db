"""U^2-Net and U^2-Net-P (Qin et al., "U^2-Net: Going Deeper with Nested U-Structure for Salient
Object Detection", Pattern Recognition 2020), with the authors' module names."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import RSU4, RSU4F, RSU5, RSU6, RSU7, upsample_like


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class U2NetBase(nn.Module):
    """Six encoder stages, five decoder stages, six side outputs fused by a 1x1 ``outconv``.

    ``forward`` returns only the fused map ``d0`` as logits when ``logits_only`` (what inference needs:
    the side outputs cost extra upsampling), else the authors' tuple of seven sigmoid maps.
    """

    def __init__(self, stages: list[nn.Module], decoders: list[nn.Module], side_channels: list[int], out_ch: int):
        super().__init__()
        for i, stage in enumerate(stages, start=1):
            setattr(self, f"stage{i}", stage)
            if i < len(stages):
                setattr(self, f"pool{i}{i + 1}", _pool())
        for i, stage in zip(range(len(decoders), 0, -1), decoders):
            setattr(self, f"stage{i}d", stage)
        for i, ch in enumerate(side_channels, start=1):
            setattr(self, f"side{i}", nn.Conv2d(ch, out_ch, 3, padding=1))
        self.outconv = nn.Conv2d(len(side_channels) * out_ch, out_ch, 1)
        self.n_stages = len(stages)
        self.logits_only = True

    def forward(self, x: torch.Tensor):
        n = self.n_stages
        encoded = []
        hx = x
        for i in range(1, n + 1):
            hx = getattr(self, f"stage{i}")(hx)
            encoded.append(hx)
            if i < n:
                hx = getattr(self, f"pool{i}{i + 1}")(hx)
        decoded = [encoded[-1]]  # the deepest stage feeds side6 directly
        for i in range(n - 1, 0, -1):
            skip = encoded[i - 1]
            hx = getattr(self, f"stage{i}d")(torch.cat((upsample_like(hx, skip), skip), 1))
            decoded.append(hx)
        decoded.reverse()  # decoded[0] = hx1d ... decoded[n-1] = hx6
        sides = [getattr(self, f"side{i}")(decoded[i - 1]) for i in range(1, n + 1)]
        sides = [sides[0]] + [upsample_like(d, sides[0]) for d in sides[1:]]
        d0 = self.outconv(torch.cat(sides, 1))
        if self.logits_only:
            return d0
        return tuple(torch.sigmoid(d) for d in [d0, *sides])


class U2NETP(U2NetBase):
    """The small model: 1.13 M parameters, 4.7 MB."""

    def __init__(self, in_ch: int = 3, out_ch: int = 1):
        super().__init__(
            stages=[RSU7(in_ch, 16, 64), RSU6(64, 16, 64), RSU5(64, 16, 64), RSU4(64, 16, 64),
                    RSU4F(64, 16, 64), RSU4F(64, 16, 64)],
            decoders=[RSU4F(128, 16, 64), RSU4(128, 16, 64), RSU5(128, 16, 64), RSU6(128, 16, 64),
                      RSU7(128, 16, 64)],
            side_channels=[64] * 6,
            out_ch=out_ch,
        )


class U2NET(U2NetBase):
    """The full model: 44 M parameters, 176 MB (also the architecture of u2net_human_seg)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 1):
        super().__init__(
            stages=[RSU7(in_ch, 32, 64), RSU6(64, 32, 128), RSU5(128, 64, 256), RSU4(256, 128, 512),
                    RSU4F(512, 256, 512), RSU4F(512, 256, 512)],
            decoders=[RSU4F(1024, 256, 512), RSU4(1024, 128, 256), RSU5(512, 64, 128), RSU6(256, 32, 64),
                      RSU7(128, 16, 64)],
            side_channels=[64, 64, 128, 256, 512, 512],
            out_ch=out_ch,
        )
