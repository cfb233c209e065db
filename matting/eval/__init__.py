"""Matting quality on a dataset with ground truth: SAD, MSE, Grad and Conn per image and as a mean, with timings.

    python -m matting.eval ../shared/evaldata/alphamatting-public            # the default edges
    python -m matting.eval DATASET --raw                                      # the plain network output
    python -m matting.eval DATASET --refine-radius 4 --refine-eps 1e-3 --json old.json
    python -m matting.eval DATASET --out runs/default --grid GT03,GT07      # + predictions and picture grids
    python -m matting.eval DATASET --variant hr-gf                            # an experimental refinement
    python -m matting.eval DATASET --foreground                               # the decontamination test

DATASET holds images/<name>.<png|jpg|...> and alpha/<name>.png (8- or 16-bit grey). An optional
trimaps/<name>_trimap1.png adds a second table: the same measures over that trimap's unknown band.
The measures are those of matting.metrics, on the whole image, alpha in [0, 1].

Timing: each image from its file to the final full-resolution alpha and RGBA cutout (decode, network, edges,
decontamination when on; no encoding), median of --repeat runs; the network's matte cache is off, so every run
pays for the network. --out DIR writes DIR/pred/<name>.png (our alpha), DIR/grid.png (input, ground truth, ours,
error) and DIR/decontamination.png (a soft-edge crop of each grid case on a contrasting colour, without and with
decontamination).

Modules: ``dataset`` (reading a dataset), ``scoring`` (measures, timings, tables), ``pictures`` (the grids),
``foreground_test`` (the decontamination test), ``variants`` (experimental refinements, for docs/QUALITY.md),
``cli`` (the command line).
"""

from __future__ import annotations

from .cli import build_parser, edge_settings, main
from .dataset import IMAGE_SUFFIXES, Sample, find_samples, read_grey, read_rgb
from .foreground_test import colour_error, foreground_test, format_foreground, known_foreground, synthetic_composite
from .pictures import CROP_SIDE, TILE_HEIGHT, contrasting_colour, error_map, quality_grid, soft_edge_crop
from .scoring import ImageResult, Report, evaluate_dataset, format_table, predict
from .variants import VARIANTS

__all__ = ["build_parser", "edge_settings", "main", "IMAGE_SUFFIXES", "Sample", "find_samples", "read_grey", "read_rgb",
           "colour_error", "foreground_test", "format_foreground", "known_foreground", "synthetic_composite",
           "CROP_SIDE", "TILE_HEIGHT", "contrasting_colour", "error_map", "quality_grid", "soft_edge_crop",
           "ImageResult", "Report", "evaluate_dataset", "format_table", "predict", "VARIANTS"]
