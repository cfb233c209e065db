"""Running a network in reduced precision (bf16, fp16) with a few ill-conditioned layers kept in float32.

Once BatchNorm is folded, U^2-Net-P's ``stage2d.rebnconv2d`` has large weights and writes activations up to
about 230 (mean 15), and ``stage2d.rebnconv1d`` turns them back into values near 0.1: cancellation. Rounding
those weights and activations to bf16 (8-bit mantissa) moves the whole matte by 3.4/255 on average (4 % of the
pixels by more than 0.1); every other layer together moves it by 0.2-0.4/255. Running just that pair in
float32, with float32 weights, costs about 6 % of the bf16 network's time (4 of 71 ms on a 2-core Xeon with
AMX) and gives the float32 matte back: no pixel off by 0.1, the same SAD and Grad on the public matting set.
``scripts/precision_sensitivity.py`` measures it per layer; docs/QUALITY.md has the figures.

A model spec names such layers as *chains*: the modules of a chain run in float32 from the input of the first
to the output of the last, handing float32 on between them; the last one hands its output back in the network's
precision, so the layers around the chain never see a dtype they were not built for.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# Module names, in data-flow order. Between two modules of a chain the value may pass through other operations
# (U^2-Net's upsample and concatenation with a skip connection): those must accept float32 next to the network's
# dtype, as torch.cat does by promoting to float32. A module's float32 output must not reach a layer outside the
# chain except through the chain's last module.
Float32Chains = tuple[tuple[str, ...], ...]


class Float32Island(nn.Module):
    """Runs ``inner`` in float32; returns float32, or ``output_dtype`` when given (the end of a chain).

    Convert a model holding islands only through ``with_precision``: a later ``.to(dtype)`` or ``.half()`` would
    round the islands' weights too (moving it to another device is fine).
    """

    def __init__(self, inner: nn.Module, output_dtype: torch.dtype | None):
        super().__init__()
        self.inner = inner
        self.output_dtype = output_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x.float())
        return y if self.output_dtype is None else y.to(self.output_dtype)


def with_precision(model: nn.Module, dtype: torch.dtype, chains: Float32Chains = ()) -> nn.Module:
    """``model`` (float32, any device) converted to ``dtype`` in place, the modules of ``chains`` kept in float32.

    The kept modules are copied before the conversion, so their weights are the float32 originals, not float32
    values rounded through ``dtype`` on the way (that rounding alone undoes most of the benefit).
    """
    if dtype == torch.float32 or not chains:
        return model.to(dtype=dtype)
    names = [name for chain in chains for name in chain]
    originals = {name: copy.deepcopy(model.get_submodule(name)).float() for name in names}
    model.to(dtype=dtype)
    for chain in chains:
        for i, name in enumerate(chain):
            last = i == len(chain) - 1
            model.set_submodule(name, Float32Island(originals[name], dtype if last else None))
    return model


def islands(model: nn.Module) -> list[str]:
    """Names of the modules running in float32 inside a reduced-precision model (reports and tests)."""
    return [name for name, module in model.named_modules() if isinstance(module, Float32Island)]
