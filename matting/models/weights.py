"""Load weights into a U^2-Net-family model from safetensors, an official ``.pth`` or a rembg ``.onnx``.

Two layouts exist:
- the authors' layout, with BatchNorm (``...conv_s1.weight`` plus ``...bn_s1.running_var`` ...): their ``.pth``
  checkpoints;
- the folded layout, BatchNorm already merged into the convolutions: rembg's ONNX exports and our embedded
  safetensors (``metadata["layout"] == "bn-folded"``).
Whatever comes in, the model that comes out has its BatchNorm folded, which is what inference wants.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidParameterError, ModelLoadError
from .blocks import fuse_batchnorm, is_fused
from .onnx_reader import read_onnx_weights

FOLDED_LAYOUT = "bn-folded"


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def conv_execution_order(model: nn.Module, in_ch: int = 3, size: int = 64) -> list[str]:
    """Names of the model's Conv2d modules in the order a forward pass runs them.

    ONNX exports keep execution order but lose most module names, so this order is the bridge between them.
    """
    names = {module: name for name, module in model.named_modules()}
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(names[mod]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    logits_only = getattr(model, "logits_only", None)
    try:
        if logits_only is not None:
            model.logits_only = False  # exports run every side output; so must this
        with torch.inference_mode():
            model(torch.zeros(1, in_ch, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        if logits_only is not None:
            model.logits_only = logits_only
    return order


def state_from_onnx(model: nn.Module, data: bytes) -> dict[str, torch.Tensor]:
    """Map a folded ONNX graph's convolutions onto ``model`` (whose BatchNorm must be folded)."""
    onnx = read_onnx_weights(data)
    order = conv_execution_order(model)
    if len(onnx.convs) != len(order):
        raise ModelLoadError(
            f"the ONNX graph has {len(onnx.convs)} convolutions, this model has {len(order)}: "
            "it is a different architecture (pick the matching --model)")
    modules = dict(model.named_modules())
    state = {}
    for conv_name, node in zip(order, onnx.convs):
        module = modules[conv_name]
        for suffix, tensor_name in zip(("weight", "bias"), node.inputs[1:3]):
            if tensor_name not in onnx.tensors:
                raise ModelLoadError(f"the ONNX convolution {node.name} has no stored {suffix}")
            value = torch.from_numpy(onnx.tensors[tensor_name])
            expected = getattr(module, suffix).shape
            if tuple(value.shape) != tuple(expected):
                raise ModelLoadError(
                    f"shape mismatch at {conv_name}.{suffix}: file {tuple(value.shape)}, model {tuple(expected)}; "
                    "the file is for a different model")
            state[f"{conv_name}.{suffix}"] = value
        if len(node.inputs) < 3:
            raise ModelLoadError(f"the ONNX convolution {node.name} has no bias")
    return state


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor] | bytes, dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open

        tensors = {}
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
        return tensors, metadata
    if suffix == ".onnx":
        return path.read_bytes(), {"layout": FOLDED_LAYOUT}
    if suffix in (".pth", ".pt", ".ckpt", ".bin"):
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model", "net"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        if not isinstance(state, dict):
            raise ModelLoadError("the checkpoint holds no state dict")
        # Checkpoints saved from nn.DataParallel prefix every key with "module.".
        state = {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}
        return state, {}
    raise ModelLoadError(f"unknown weights format {suffix!r}: use .safetensors, .pth or .onnx")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly and return it with BatchNorm folded."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    try:
        state, metadata = _read_state(path)
    except ModelLoadError as exc:
        raise ModelLoadError(str(exc), source=path.name) from exc
    except Exception as exc:  # corrupt files raise anything from struct errors to pickle errors
        # one line: torch.load's refusals run to a dozen lines of advice
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ModelLoadError(f"cannot read weights file {path.name}: {first}") from exc
    if isinstance(state, bytes):  # ONNX: folded, mapped by execution order
        fuse_batchnorm(model)
        try:
            state = state_from_onnx(model, state)
        except ModelLoadError as exc:
            raise ModelLoadError(str(exc), source=path.name) from exc
    else:
        has_bn = any(".bn_s1." in key for key in state)
        if not has_bn:
            fuse_batchnorm(model)
    state = {k: v.float() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ModelLoadError(
            f"{path.name} does not match this model: {len(missing)} missing keys (e.g. {sorted(missing)[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:2]}); pick the matching --model")
    try:
        model.load_state_dict(state, strict=False)  # num_batches_tracked is the only thing left out
    except RuntimeError as exc:
        raise ModelLoadError(f"{path.name} does not match this model: {str(exc).splitlines()[-1].strip()}") from exc
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(f"{path.name} is corrupt: non-finite values in {name}")
    if not is_fused(model):
        fuse_batchnorm(model)
    return model


def save_folded_safetensors(model: nn.Module, path: str | Path, metadata: dict[str, str]) -> None:
    """Write a folded model's weights as float32 safetensors, byte-for-byte reproducibly.

    The safetensors package orders metadata keys at random, so the file is written here by hand: an 8-byte
    little-endian header length, a JSON header with sorted keys, then the tensors in name order.
    """
    if not is_fused(model):
        raise InvalidParameterError("fold BatchNorm before saving in the folded layout")
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in sorted(model.state_dict().items())}
    header: dict[str, object] = {"__metadata__": {"layout": FOLDED_LAYOUT, **metadata}}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep the data 8-byte aligned, as the format recommends
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for tensor in tensors.values():
            handle.write(tensor.numpy().astype("<f4").tobytes())
