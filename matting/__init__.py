"""Image matting engine: U^2-Net models, a shared GPU/CPU pipeline, edge refinement. No gradio needed."""

from .errors import MattingError
from .settings import EdgeSettings

__version__ = "0.1.0"


def __getattr__(name):
    # Heavy imports (torch, models) only when asked for, so `import matting` stays cheap for the CLI's --help.
    if name in ("Pipeline", "get_pipeline", "reset_pipeline"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "create_model":
        from .models import create_model

        return create_model
    raise AttributeError(name)


__all__ = ["EdgeSettings", "MattingError", "Pipeline", "create_model", "get_pipeline", "reset_pipeline"]
