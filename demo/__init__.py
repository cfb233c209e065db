"""The web app around the matting engine: Gradio Blocks UI only (layout, events, files); the engine does the work.

    from demo import build_demo, launch_options
    demo = build_demo(pipe)            # pipe: matting.pipeline.Pipeline, loaded once
    demo.launch(**launch_options(demo, server_port=7860))

``python app.py`` does exactly that from the command line.
"""

from __future__ import annotations

import os

# Before gradio is imported anywhere: no usage analytics, no telemetry, nothing leaves the machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__all__ = ["build_demo", "launch_options"]


def __getattr__(name: str):
    """build_demo and launch_options import gradio: only when asked for, so `matting-app --help` stays quick."""
    if name in __all__:
        from . import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'demo' has no attribute {name!r}")
