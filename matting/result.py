"""What the engine hands back: a matted image (network run once) and its renders (cheap, repeatable)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .notices import Notice


@dataclass(eq=False)
class MatteResult:
    """One image after the network: everything a re-render needs, kept on the pipeline's device.

    image: (H, W, 3) uint8 at the working resolution, upright. matte: (1, 1, h, w) float32, the network's
    min-max normalised output at its own size. guide: (1, 3, h, w) float32, the photo at the network's size,
    the low-resolution guide of the refinement.
    """

    key: str
    name: str | None
    image: torch.Tensor
    matte: torch.Tensor
    guide: torch.Tensor
    input_alpha: torch.Tensor | None    # (H, W) uint8 when the upload had transparency
    original_size: tuple[int, int]      # (width, height) of the upright input before any reduction
    notices: list[Notice] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # milliseconds per stage
    cached: bool = False                # the matte came from the cache: the network did not run
    _previews: dict = field(default_factory=dict, repr=False)  # (h, w) -> photo; ("soft", (h, w)) -> soft alpha

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the working resolution."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def device(self) -> torch.device:
        return self.image.device

    @property
    def was_reduced(self) -> bool:
        return self.size != self.original_size

    def to(self, device: torch.device | str) -> MatteResult:
        """A copy on ``device``, previews left behind: the CPU fallback, or a result sent to a model replica."""
        def move(tensor):
            return None if tensor is None else tensor.to(device)

        return MatteResult(key=self.key, name=self.name, image=move(self.image), matte=move(self.matte),
                           guide=move(self.guide), input_alpha=move(self.input_alpha),
                           original_size=self.original_size, notices=self.notices)


@dataclass(eq=False)
class Rendered:
    """A render at some size: uint8 numpy arrays, ready to display or encode."""

    alpha: np.ndarray                   # (H, W)
    rgba: np.ndarray | None             # (H, W, 4), straight (not premultiplied) colour
    composite: np.ndarray | None        # (H, W, 3) on the chosen background, when one was given
    size: tuple[int, int]               # (width, height)
    is_preview: bool
    timings: dict[str, float] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    # Wall-clock ms of the call's parts where it waited: for its GPU turn ("turn_wait"), inside the turn queueing
    # its work ("in_turn"; of it, "in_turn_cpu" the thread's own CPU time and "turn_copies" the copies' start),
    # then for the GPU and the copies ("gpu_wait"). Load tests read them (where a slow render under load waits);
    # the timings above are the work's own time.
    waits: dict[str, float] = field(default_factory=dict)
    # Outputs already encoded where they were rendered (matting.png_device), by kind ("cutout", "alpha",
    # "composite"): their arrays above may be None then (the batch's render stacks; Pipeline.render_many).
    png: dict[str, bytes] = field(default_factory=dict)
