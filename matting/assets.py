"""Where the embedded weights and example photos are: the checkout's assets/ folder, or, once the project is
installed with pip, the same files as the package ``matting_assets`` (pyproject.toml maps assets/ to it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CHECKOUT_ASSETS = Path(__file__).resolve().parents[1] / "assets"


def assets_dir() -> Path:
    """The folder holding models/ and examples/."""
    if (CHECKOUT_ASSETS / "models").is_dir():
        return CHECKOUT_ASSETS
    spec = importlib.util.find_spec("matting_assets")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return CHECKOUT_ASSETS   # neither: the caller's "weights not found" message names this path
