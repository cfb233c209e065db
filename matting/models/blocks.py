"""Building blocks of the U^2-Net family (Qin et al., 2020): REBNCONV and the RSU "residual U" blocks.

Attribute names follow the authors' ``model/u2net.py`` so their checkpoints load with ``strict=True``
(``rebnconvin.conv_s1.weight``, ``rebnconv1.bn_s1.running_var``, ...). The same blocks serve ISNet.

Module registration order equals execution order; the ONNX loader relies on that to map the unnamed,
BatchNorm-folded convolutions of rembg's exports one to one onto these modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidParameterError


def upsample_like(src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``src`` to ``target``'s spatial size (ONNX Resize ``pytorch_half_pixel``)."""
    if src.shape[-2:] == target.shape[-2:]:
        return src
    return F.interpolate(src, size=target.shape[-2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 convolution (dilated by ``dirate``), BatchNorm, ReLU."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, dirate: int = 1, stride: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate, stride=stride)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class RSU(nn.Module):
    """Residual U-block of ``height`` levels (RSU-7 ... RSU-4 in the paper).

    Encoder: ``rebnconv1..rebnconv{height-1}`` with a 2x2 max-pool between levels, then a dilated
    ``rebnconv{height}`` at the bottom; decoder ``rebnconv{height-1}d .. rebnconv1d`` on the concatenation
    of the upsampled deeper output and the skip connection; output = decoder output + ``rebnconvin(x)``.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        if height < 3:
            raise InvalidParameterError("RSU needs at least 3 levels")
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.pool1 = _pool()
        for level in range(2, height):
            setattr(self, f"rebnconv{level}", REBNCONV(mid_ch, mid_ch, dirate=1))
            if level < height - 1:
                setattr(self, f"pool{level}", _pool())
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for level in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{level}d", REBNCONV(mid_ch * 2, mid_ch, dirate=1))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = []
        hx = hxin
        for level in range(1, self.height):
            hx = getattr(self, f"rebnconv{level}")(hx)
            skips.append(hx)
            if level < self.height - 1:
                hx = getattr(self, f"pool{level}")(hx)
        hx = getattr(self, f"rebnconv{self.height}")(hx)
        for level in range(self.height - 1, 0, -1):
            skip = skips[level - 1]
            hx = getattr(self, f"rebnconv{level}d")(torch.cat((upsample_like(hx, skip), skip), 1))
        return hx + hxin


class RSU4F(nn.Module):
    """RSU-4F: the dilated variant without pooling, used at the lowest resolutions."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


def RSU7(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802 - the paper's names
    return RSU(7, in_ch, mid_ch, out_ch)


def RSU6(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802
    return RSU(6, in_ch, mid_ch, out_ch)


def RSU5(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802
    return RSU(5, in_ch, mid_ch, out_ch)


def RSU4(in_ch: int, mid_ch: int, out_ch: int) -> RSU:  # noqa: N802
    return RSU(4, in_ch, mid_ch, out_ch)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every REBNCONV's BatchNorm into its convolution (inference only), in place.

    Halves the kernels launched per block and is exactly the form rembg's ONNX files ship in.
    """
    for module in model.modules():
        if isinstance(module, REBNCONV) and isinstance(module.bn_s1, nn.BatchNorm2d):
            conv, bn = module.conv_s1, module.bn_s1
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                new_bias = (bias - bn.running_mean) * scale + bn.bias
                if conv.bias is None:
                    conv.bias = nn.Parameter(new_bias)
                else:
                    conv.bias.copy_(new_bias)
            module.bn_s1 = nn.Identity()
    return model


def is_fused(model: nn.Module) -> bool:
    return not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
