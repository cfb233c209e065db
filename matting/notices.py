"""What the engine tells the user it did to an input (reduced it, dropped frames, converted colours...), as data:
a stable code and its parameters, like MattingError's codes. A Notice is also its English sentence (a str), so
scripts and logs print it as it is; the web UI translates it by code (demo/i18n.py)."""

from __future__ import annotations

# One English sentence per code; the parameters fill the braces.
TEMPLATES = {
    "bit_depth_16": "16-bit image reduced to 8 bits",
    "bit_depth_32": "32-bit image scaled to 8 bits",
    "floating_point": "floating-point image reduced to 8 bits",
    "cmyk": "CMYK image converted to RGB; colours may differ slightly",
    "clipped": "values outside 0..1 were clipped",
    "animated": "animated {label}: only the first frame is used",
    "tiff_pages": "multi-page TIFF: only the first page is used",
    "multi_frame": "multi-frame image: only the current frame is used",
    "reduced": ("Large image: {w0} x {h0} was reduced to {w1} x {h1} for processing (limit {limit} px on the "
                "longer side, to keep it fast and within memory; raise it with --max-side)."),
    "gpu_out_of_memory": "The GPU ran out of memory; this image was processed on the CPU.",
    "decoder_warning": "{detail} (the image was read anyway)",   # Pillow's words (decode_warnings.py)
    # the batch's, about its outputs
    "redone": "redone: its outputs were made with other settings, another model or an older input",
    "removed": "removed {name}: made with other settings, and not asked for now",
}


class Notice(str):
    """``Notice("reduced", w0=8000, h0=6000, w1=4096, h1=3072, limit=4096)``: equal to its English sentence,
    with ``code`` and ``params`` for a translation."""

    code: str
    params: dict

    def __new__(cls, code: str, **params) -> Notice:
        text = super().__new__(cls, TEMPLATES[code].format(**params))   # an unknown code is a KeyError: a bug
        text.code = code
        text.params = params
        return text

    def __getnewargs_ex__(self):   # pickling (worker processes) rebuilds it from its code and parameters
        return (self.code,), self.params

    def __repr__(self) -> str:
        return f"Notice({self.code!r}, {self.params!r})"
