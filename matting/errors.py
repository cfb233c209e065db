"""One exception family for everything a user can get wrong or a machine can lack.

Each error carries a message meant for the person who uploaded the file, not for a developer:
it names the input and says what to do. ``code`` is a stable machine-readable tag for APIs and tests.
"""

from __future__ import annotations


class MattingError(Exception):
    """Base class: every error the engine raises on purpose derives from this."""

    code = "matting_error"

    def __init__(self, message: str, *, source: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class EmptyInputError(MattingError):
    code = "empty_input"


class UnsupportedFormatError(MattingError):
    code = "unsupported_format"


class CorruptImageError(MattingError):
    code = "corrupt_image"


class ImageTooLargeError(MattingError):
    """Too many pixels (refused from the header, before decoding) or too large a file."""

    code = "image_too_large"


class ImageTooSmallError(MattingError):
    code = "image_too_small"


class InvalidParameterError(MattingError, ValueError):
    code = "invalid_parameter"


class ModelLoadError(MattingError):
    """Weights missing, corrupt, or not matching the chosen architecture."""

    code = "model_load_error"


class InferenceError(MattingError):
    """The network could not run even after the out-of-memory fallbacks."""

    code = "inference_error"


class InputError(MattingError):
    """A batch input that cannot be read at all (gone, a folder, a damaged archive entry); one line, for the
    user. The image's own problems are the decode errors above."""

    code = "input_error"


class OutputError(MattingError):
    """The output location cannot be used (a setup error that stops a batch before it starts), or an output
    name that would leave it."""

    code = "output_error"


class RayUnavailable(MattingError):
    """--ray was asked for and Ray is not installed, or cannot be started or joined."""

    code = "ray_unavailable"
