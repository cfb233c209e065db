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

from .ui import build_demo, launch_options  # noqa: E402

__all__ = ["build_demo", "launch_options"]
