"""The one component of our own: an image input that hands the engine the user's file untouched.

Gradio's ComponentMeta writes a type stub (components.pyi) beside any module that defines a component
subclass; that is why this class lives alone in this small module.
"""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import ImageData


class UploadImage(gr.Image):
    """gr.Image whose upload reaches the handler as the user's file, untouched.

    gr.Image opens every upload with Pillow in preprocess (and re-encodes it unless the mode matches), so a
    corrupt file or a decompression bomb fails inside Gradio with a generic error. This subclass hands the path
    to the engine, whose decoder checks the header first and explains what is wrong. ``is_template`` makes the
    frontend use the ordinary image component.
    """

    is_template = True

    def preprocess(self, payload: ImageData | None) -> str | None:
        if payload is None:
            return None
        if payload.path is None:
            return super().preprocess(payload)   # a data: URL (webcam frame); Gradio writes it to a file
        return str(payload.path)
