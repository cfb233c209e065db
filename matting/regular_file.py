"""Reading an input file safely: only a regular file, and only up to a size limit.

A pipe (FIFO) named like a photo would block its reader for ever waiting for a writer, and a link to /dev/zero or
a huge sparse file would fill the memory before any decoder could refuse it. The file is opened without blocking,
so a pipe is seen for what it is, and checked before a byte is read. Callers turn the errors into their own
one-line messages from these errors' own (batch_inputs.read_file, decode's paths).
"""

from __future__ import annotations

import os
import stat

# 400 MB holds a 100 MP RGBA TIFF (decode's DEFAULT_MAX_PIXELS): the most an image file or zip entry may hold.
MAX_FILE_BYTES = 400 << 20


NOT_REGULAR = "not a regular file (a pipe, a device or a socket)"


class NotRegularFile(OSError):
    """A pipe, a device or a socket; str() is the user's one line."""

    def __init__(self):
        super().__init__(NOT_REGULAR)


class FileTooLarge(OSError):
    """str() is the user's one line."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"the file is {size / 2**20:,.0f} MB, over the limit of {limit >> 20} MB for one image")
        self.size, self.limit = size, limit


def read_regular_file(path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``; IsADirectoryError, NotRegularFile, FileTooLarge (larger than
    ``limit`` bytes, or grown past it while read) or the OSError of opening or reading it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile()
        if info.st_size > limit:
            raise FileTooLarge(info.st_size, limit)
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileTooLarge(len(data), limit)
    return data
