"""One spec per model architecture (how to build it, what it eats) and, apart, what was measured on each known
weights file (timm keeps pretrained configs beside its architectures the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..assets import assets_dir
from ..errors import InvalidParameterError, ModelLoadError
from .isnet import ISNetDIS
from .precision import Float32Chains
from .u2net import U2NET, U2NETP
from .weights import load_weights

ASSETS_MODELS = assets_dir() / "models"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsInfo:
    """Facts found on one weights file, which hold for that file only: found by its content, so a copy under
    another name is the same weights and a fine-tuned file is not."""
    path: Path
    md5: str
    # Layers to keep in float32 when the network runs in bf16/fp16 (models/precision.py). None: the weights'
    # sensitivity to bf16 was never measured, so "auto" keeps them in float32 on the CPU.
    float32_chains: Float32Chains | None = None
    # The weights quantized to int8 for the CPU (scripts/build_u2netp_int8.py; run by OpenVINO), or None.
    int8_network: Path | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[[], nn.Module]
    input_hw: tuple[int, int]              # (H, W) the network was trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale_by_max: bool                     # divide each image by its own max before mean/std (U^2-Net)
    description: str
    embedded: WeightsInfo | None = None    # the weights that ship with us, or None when the user brings them

    @property
    def default_weights(self) -> Path | None:
        return self.embedded.path if self.embedded else None

    def weights_hint(self) -> str:
        return {
            "u2net": "the authors' u2net.pth or rembg's u2net.onnx",
            "u2net_human_seg": "the authors' u2net_human_seg.pth or rembg's u2net_human_seg.onnx",
            "isnet-general-use": "the DIS authors' isnet-general-use.pth or rembg's isnet-general-use.onnx",
        }.get(self.name, "a matching .safetensors, .pth or .onnx file")


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidParameterError(f"unknown model {name!r}; available: {', '.join(available_models())}") from None


def known_weights(spec: ModelSpec, md5: str | None) -> WeightsInfo | None:
    """What was measured on the weights with this content digest (``file_md5``), or None for weights we never
    measured."""
    return spec.embedded if spec.embedded is not None and md5 == spec.embedded.md5 else None


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str = "u2netp", weights: str | Path | None | bool = None, *,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """Build ``name`` in eval mode with BatchNorm folded.

    ``weights``: None takes the model's embedded default; a path loads that file (.safetensors, .pth, .onnx);
    False leaves random initialisation (tests, shape checks).
    """
    spec = get_spec(name)
    model = spec.builder()
    if weights is None:
        if spec.default_weights is None:
            raise ModelLoadError(f"model {name!r} has no embedded weights: pass weights=PATH ({spec.weights_hint()})")
        if not spec.default_weights.is_file():
            raise ModelLoadError(f"the embedded weights are missing: {spec.default_weights} (reinstall or restore "
                                 "assets/models from the repository)")
        weights = spec.default_weights
    if weights is not False:
        load_weights(model, weights)
    model.eval()
    return model.to(device=device, dtype=dtype)


register(ModelSpec(
    name="u2netp", builder=U2NETP, input_hw=(320, 320), mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_by_max=True,
    description="U^2-Net-P, 1.1 M parameters (embedded; Qin et al. 2020, Apache-2.0)",
    embedded=WeightsInfo(
        path=ASSETS_MODELS / "u2netp.safetensors", md5="02ef3197847d7658c2342c187328fe7c",
        float32_chains=(("stage2d.rebnconv2d", "stage2d.rebnconv1d"),),
        int8_network=ASSETS_MODELS / "u2netp_int8.onnx")))
register(ModelSpec(
    name="u2net", builder=U2NET, input_hw=(320, 320), mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_by_max=True,
    description="U^2-Net, 44 M parameters (bring your own weights)"))
register(ModelSpec(
    name="u2net_human_seg", builder=U2NET, input_hw=(320, 320), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    scale_by_max=True,
    description="U^2-Net trained for human segmentation (bring your own weights)"))
register(ModelSpec(
    name="isnet-general-use", builder=ISNetDIS, input_hw=(1024, 1024), mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0),
    scale_by_max=False,
    description="ISNet (DIS), 44 M parameters, 1024 x 1024 input (bring your own weights)"))
