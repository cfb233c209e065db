"""Pure tensor operations on images and alpha mattes (the engine's hot path), one module per family:

* ``checks``: argument and shape checks; ``windows``: the sliding-window core of the filters;
* ``convert``: uint8 <-> float layouts and the network's normalisation; ``resize``: resizing and size fits;
* ``filters``: threshold, feather, erode/dilate, box filter; ``guided``: the guided filter;
* ``composite``: cutout over a background.

Callers use the names re-exported here (``ops.resize``, ``ops.feather``...).

Conventions (kornia style):

* images are float tensors ``(B, C, H, W)``, usually in ``[0, 1]``; alpha mattes are
  ``(B, 1, H, W)`` in ``[0, 1]``;
* no function modifies its inputs; non-contiguous inputs are accepted; the result has the
  input's dtype and device; ``B == 0`` gives an empty result of the right shape; a batch of
  N gives the same values as N single calls (every op is per image);
* identity settings (``sigma == 0``, ``radius == 0``, ``level == 0``, a resize to the same
  size, an image that already fits) return the input tensor itself, not a copy: the UI calls
  these on every slider move and an 8-megapixel copy is not free. Clone before writing into
  a result in place;
* float16 / bfloat16 inputs are computed in float32 where values are accumulated (filters,
  guided filter) and cast back;
* bad arguments and bad shapes raise :class:`~matting.errors.InvalidParameterError`.

Why shifted slices instead of ``max_pool2d`` / ``avg_pool2d`` / ``conv2d``: on a 2-core CPU
and an 8-megapixel single-channel alpha, ``max_pool2d`` takes 214 ms for a 3x3 window and
1.4 s for 65x65, ``conv2d`` with a 13-tap separable Gaussian 305 ms, a separable
``avg_pool2d`` box 50-270 ms; sliding windows built from whole-image shifted views
(``narrow`` + ``torch.maximum`` / ``+``, doubling the window each step, so O(log k) passes)
take 9-30 ms for the same results, bit for bit for max/min. On CUDA both are fast; the
same code runs there so results agree across devices.
"""

from .composite import composite, fit_background
from .convert import min_max_normalize, normalize_for_model, to_float_image, to_uint8_hwc
from .filters import box_filter, erode_dilate, feather, threshold
from .guided import fast_guided_filter, guided_filter
from .resize import downscale_to_fit, fit_size, resize

__all__ = [
    "to_float_image",
    "to_uint8_hwc",
    "resize",
    "normalize_for_model",
    "min_max_normalize",
    "threshold",
    "feather",
    "erode_dilate",
    "box_filter",
    "guided_filter",
    "fast_guided_filter",
    "composite",
    "fit_background",
    "downscale_to_fit",
    "fit_size",
]
