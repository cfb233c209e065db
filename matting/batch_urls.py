"""Batch inputs named by URL (s3://bucket/photos/, gs://..., file:///data/photos): listed and read through pyarrow's
file systems, the ones Ray Data reads with. pyarrow comes with requirements-ray.txt; nothing else needs it.

A URL of a folder takes its images as a folder path does (one level, or all with ``recursive``; hidden files and
other extensions left out); a URL of one file takes that file. Credentials come from the environment as pyarrow
reads them (AWS_ACCESS_KEY_ID..., GOOGLE_APPLICATION_CREDENTIALS). Zip archives are read from disk only.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from .errors import InputError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str) -> bool:
    return bool(URL.match(text))


def _filesystem(url: str):
    try:
        from pyarrow import fs
    except ImportError:
        raise InputError("reading URLs needs pyarrow: pip install -r requirements-ray.txt") from None
    try:
        return fs.FileSystem.from_uri(url)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot open {url}: {' '.join(str(exc).split())}") from None


def list_url(url: str, recursive: bool, is_image_name) -> list[tuple[str, PurePosixPath, str]]:
    """(url of the file, its path relative to ``url``, its stamp: size and modification time) for each image."""
    from pyarrow import fs

    filesystem, base = _filesystem(url)
    try:
        info = filesystem.get_file_info(base)
        if info.type == fs.FileType.File:
            return [(url, PurePosixPath(PurePosixPath(base).name), _stamp(info))]
        if info.type != fs.FileType.Directory:
            raise InputError(f"nothing at {url}")
        found = filesystem.get_file_info(fs.FileSelector(base, recursive=recursive))
    except OSError as exc:
        raise InputError(f"cannot list {url}: {' '.join(str(exc).split())}") from None
    prefix = url.rstrip("/")
    items = []
    for entry in sorted(found, key=lambda e: e.path):
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(base))
        if entry.type != fs.FileType.File or any(part.startswith(".") for part in rel.parts):
            continue
        if is_image_name(rel.name):
            items.append((f"{prefix}/{rel.as_posix()}", rel, _stamp(entry)))
    return items


def _stamp(info) -> str:
    return f"url:{info.size}:{info.mtime_ns}"


def read_url(url: str) -> bytes:
    filesystem, path = _filesystem(url)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.readall()
    except FileNotFoundError:
        raise InputError("file not found (deleted while the batch ran?)") from None
    except OSError as exc:
        raise InputError(f"cannot read {url}: {' '.join(str(exc).split())}") from None
