"""Finding the images of a batch: files, folders (optionally recursive), globs and zip archives.

Discovery lists names and how to read each one; no pixel is read here, so a folder of a million photos costs a
list of small objects, never the images themselves.

Rules:
- A file named explicitly is always tried: if it is not an image, decoding fails with a clear reason.
- In a folder, a glob match or a zip, only files with an image extension (IMAGE_EXTENSIONS) are taken; anything
  else, hidden files (".name") and macOS resource forks ("__MACOSX/", "._name") are ignored silently, except a zip
  inside a zip, which fails with the reason (it is not opened).
- Folders are walked one level deep unless ``recursive``; zips are always taken whole (an archive is one upload).
- Each item carries ``rel``: where its outputs go, relative to the output root, without suffix. For a folder, a
  zip or a glob it keeps the sub-folders ("a/x"); for an explicit file it is the stem ("x").
- A photo named by two inputs (a pattern and a file in it, a zip given twice) is taken once, where it came first.
- Zip entry names are never used as disk paths as they are: "..", ".", empty parts, leading slashes and drive
  letters are dropped ("../x.jpg" -> "x", "C:\\a\\x.jpg" -> "a/x"). Entries that declare a huge size, compress
  suspiciously well (zip bombs) or are encrypted fail on their own; the rest of the archive goes on.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import InputError
from .regular_file import MAX_FILE_BYTES, NOT_REGULAR, FileTooLarge, NotRegularFile, read_regular_file

# What the decoder reads (matting/decode.py), by the names cameras and tools give it; HEIC/HEIF too, so that an
# iPhone's photos in a folder fail with the reason (not supported: convert them) instead of passing unseen.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif",
                              ".avif", ".ppm", ".pgm", ".pbm", ".pnm", ".heic", ".heif"})
NESTED_ARCHIVE = "an archive inside an archive is not opened: extract it and give the inner archive or its photos"

# Zip bomb guards: an image entry larger than this is refused before decompressing it (400 MB holds a
# 100-megapixel RGBA TIFF, the engine's pixel limit); a file on disk likewise, before it is read, ...
MAX_ENTRY_BYTES = MAX_FILE_BYTES
# ... as is one whose compression ratio is beyond what image data reaches (checked above MIN_RATIO_BYTES only:
# a small entry cannot hurt, whatever its ratio), ...
MAX_RATIO = 200
MIN_RATIO_BYTES = 1 << 20
# ... and entries past this many uncompressed bytes in one archive.
MAX_ARCHIVE_BYTES = 32 << 30

_GLOB_MAGIC = re.compile(r"[*?[]")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class InputItem:
    name: str                       # display name: relative path in a folder or zip, else the file name
    rel: PurePosixPath              # output location relative to the output root, without suffix
    path: Path | None = None        # a file on disk
    archive: "ZipInput | None" = None
    member: zipfile.ZipInfo | None = None
    error: str | None = None        # known before reading: the item fails with this message
    url: str | None = None          # an object-store or file:// URL (batch_urls.py)
    url_stamp: str = ""             # its size and modification time, from the listing

    def read_bytes(self) -> bytes:
        if self.error:
            raise InputError(self.error)
        if self.archive is not None:
            return self.archive.read(self.member)
        if self.url is not None:
            from .batch_urls import read_url

            return read_url(self.url)
        return read_file(self.path)


def read_file(path: Path) -> bytes:
    """A batch input file's bytes, or an InputError saying in one line why not (the local engine's readers and
    the Ray workers'). Only a regular file of at most MAX_ENTRY_BYTES is read (regular_file.py says why)."""
    try:
        return read_regular_file(path, MAX_ENTRY_BYTES)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(_dangling(path)) from None
        raise InputError("file not found (deleted while the batch ran?)") from None
    except IsADirectoryError:
        raise InputError("not a file but a folder") from None
    except (NotRegularFile, FileTooLarge) as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}") from None


def source_of(item: InputItem, folders: dict[str, str] | None = None) -> dict:
    """Where ``item``'s bytes are, as plain data another process reads them from (read_source): an absolute path, a
    zip's path and the member's header offset (names may repeat), or a URL. ``folders``: the real paths of the
    folders a run has looked up so far, kept by the run, so that each folder is looked up once (a realpath is an
    lstat per part of the name; a run hands out thousands of photos)."""
    if item.archive is not None:
        return {"zip": in_real_folder(item.archive.path, folders), "offset": item.member.header_offset}
    if item.url is not None:
        return {"url": item.url}
    return {"path": in_real_folder(item.path, folders)}


def in_real_folder(path, folders: dict[str, str] | None) -> str:
    """``path`` (a file's) absolute, its folder's links resolved (the file's own name kept): each folder looked up
    once in ``folders``, the caller's cache (None: resolved outright, the file's own link too). Strings, not Paths:
    a run asks this for every photo, and a rerun's guard for every input (batch_outputs.inputs_in_folder)."""
    if folders is None:
        return os.path.realpath(path)
    parent, name = os.path.split(os.fspath(path))
    real = folders.get(parent)
    if real is None:
        real = folders[parent] = os.path.realpath(parent)   # "" (a bare file name): the working folder
    return os.path.join(real, name)   # a link as a file name is read through: the same bytes


def read_source(source: dict) -> bytes:
    """The bytes of an input described by source_of: a file, a zip member, or an object-store URL."""
    if "zip" in source:
        archive, members = _open_zip(source["zip"], *_stamp(source["zip"]))
        info = members.get(source["offset"])
        if info is None:
            raise InputError(f"this entry is no longer in {Path(source['zip']).name}")
        return archive.read(info)
    if "url" in source:
        from .batch_urls import read_url

        return read_url(source["url"])
    return read_file(Path(source["path"]))


def _stamp(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return 0, 0   # _open_zip says what is wrong
    return info.st_size, info.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _open_zip(path: str, size: int, mtime_ns: int) -> tuple["ZipInput", dict[int, zipfile.ZipInfo]]:
    """An input archive opened once per process (a Ray worker, an engine helper) and kept for later runs, its
    members by header offset; keyed by size and modification time too, so a rewritten archive is opened again."""
    try:
        archive = ZipInput(Path(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"cannot open the archive {Path(path).name}: {exc}") from None
    return archive, {info.header_offset: info for info in archive.zip.infolist()}


class ZipInput:
    """One input archive, opened once; ZipFile serialises its own reads, so worker threads can share it."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path)

    def read(self, info: zipfile.ZipInfo) -> bytes:
        try:
            with self.zip.open(info) as handle:
                data = handle.read(info.file_size + 1)  # never more than declared, whatever the stream says
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError,
                zlib.error) as exc:   # zlib.error: damaged deflate data
            raise InputError(f"cannot read this entry of {self.path.name}: {exc}") from None
        if len(data) > info.file_size:
            raise InputError(f"this entry of {self.path.name} holds more data than it declares (zip bomb?)")
        return data

    def close(self) -> None:
        self.zip.close()


@dataclass
class Discovery:
    items: list[InputItem]
    archives: list[ZipInput]
    repeats: int = 0                # images named again by a later input ("*.jpg a.jpg"), taken once

    def close(self) -> None:
        for archive in self.archives:
            archive.close()


def discover(inputs, *, recursive: bool = False, exclude: Path | None = None) -> Discovery:
    """List the images of ``inputs`` (paths, folders, globs, zips) in a stable order.

    ``exclude``: a folder never to look into (the output folder, so a rerun does not take its own outputs).
    Inputs that match nothing become items with ``error`` set, so they are reported like any failure.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = Discovery([], [])
    skip = exclude.resolve() if exclude is not None else None
    origin: list[int] = []   # which input found each item
    for index, raw in enumerate(inputs):
        _discover_one(os.fspath(raw), recursive, skip, found)
        origin += [index] * (len(found.items) - len(origin))
    _take_each_once(found, origin)
    return found


def _take_each_once(found: Discovery, origin: list[int]) -> None:
    """An image that two inputs name ("photos/*.jpg photos/a.jpg", a folder and a pattern in it, a zip given
    twice) is done once, where it was first found: done twice it cost the time again and wrote a second set of
    outputs under another name (x_2); those are counted in ``repeats``. One input may find a photo twice too
    ("photos/**" matches a sub-folder and the photos in it): taken once, not counted. Paths compare as absolute,
    normalised names (no file is opened: a folder of a million photos stays a list); two links to one photo are
    two names and are both done."""
    first: dict = {}   # identity -> the input that found it first
    kept = []
    for item, index in zip(found.items, origin):
        key = _identity(item)
        if key in first:
            found.repeats += first[key] != index
            continue
        if key is not None:
            first[key] = index
        kept.append(item)
    found.items[:] = kept


def _identity(item: InputItem):
    if item.error is not None:
        return None   # each failure is reported as it was named
    if item.member is not None:
        return ("zip", os.path.abspath(item.archive.path), item.member.filename)
    if item.url is not None:
        return ("url", item.url)
    return ("file", os.path.abspath(item.path))


def _discover_one(text: str, recursive: bool, skip: Path | None, found: Discovery) -> None:
    from .batch_urls import is_url

    if not text.strip():   # an unset shell variable: Path("") would be the working folder
        found.items.append(_failed("(empty name)", "an empty input name: give a file, a folder, a pattern or a .zip"))
        return
    if is_url(text):
        return _add_url(text, recursive, found)
    path = Path(text)
    kind = _kind_of(text)
    if kind == "folder":
        unreadable: list[tuple[str, str]] = []
        items = _walk(path, PurePosixPath(), recursive, skip, unreadable)
        found.items.extend(items)
        for name, reason in unreadable:
            found.items.append(_failed(name, reason))
        if not items and not unreadable:
            hint = "" if recursive else "; add -r to look in sub-folders"
            found.items.append(_failed(text, f"no images in this folder (looked for "
                                       f"{', '.join(sorted(IMAGE_EXTENSIONS))}{hint})"))
    elif kind == "file":
        if _is_zip_name(path):
            _add_zip(path, found)
        else:
            found.items.append(_file_item(path, PurePosixPath(path.name)))
    elif _GLOB_MAGIC.search(text):
        _add_glob(text, recursive, skip, found)
    elif kind == "other":   # a pipe or a device, or a link to one
        found.items.append(_failed(text, NOT_REGULAR))
    elif path.is_symlink():
        found.items.append(_failed(text, _dangling(path)))
    else:
        found.items.append(_failed(text, "file or folder not found"))


def _kind_of(text: str) -> str | None:
    """"folder", "file" (a regular one), "other" (a pipe, a device) or None (nothing there, or nothing this
    process may look at): one stat, where is_dir() then is_file() were two for each of thousands of photos a shell
    names one by one."""
    try:
        mode = os.stat(text).st_mode
    except (OSError, ValueError):   # ValueError: a NUL in the name, as Path.exists() takes it
        return None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _add_url(url: str, recursive: bool, found: Discovery) -> None:
    from .batch_urls import list_url

    try:
        listed = list_url(url, recursive, _is_image_name)
    except InputError as exc:
        found.items.append(_failed(url, str(exc)))
        return
    for file_url, rel, stamp in listed:
        found.items.append(InputItem(str(rel), rel.with_suffix(""), url=file_url, url_stamp=stamp))
    if not listed:
        hint = "" if recursive else "; add -r to look in sub-folders"
        found.items.append(_failed(url, f"no images at this URL{hint}"))


def _add_glob(pattern: str, recursive: bool, skip: Path | None, found: Discovery) -> None:
    base = _glob_base(pattern)
    before = len(found.items)
    for match in map(Path, _glob(pattern, base)):   # a photo matched twice is taken once (_take_each_once)
        rel = _relative(match, base)
        if match.is_dir():
            if not _excluded(match, skip):
                found.items.extend(_walk(match, rel, recursive, skip))
        elif _is_zip_name(match) and match.is_file():
            _add_zip(match, found)
        elif _is_image_name(match.name) and not match.name.startswith("."):
            found.items.append(_file_item(match, rel))
    if len(found.items) == before:
        found.items.append(_failed(pattern, "no images match this pattern"))


def _glob(pattern: str, base: Path) -> list[str]:
    """glob.glob's matches, sorted; but "**" walks the folders without following links to folders (glob.glob
    follows them, so a link to a parent folder made it list the same photos without end)."""
    parts = Path(pattern).parts[len(base.parts) if base != Path(".") else 0:]
    if "**" not in parts:
        return sorted(glob.glob(pattern))
    matches = []
    for root, dirs, files in os.walk(base):   # followlinks=False
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))   # as glob: hidden folders are not walked
        root_parts = Path(root).relative_to(base).parts
        folders = [d for d in dirs if not os.path.islink(os.path.join(root, d))]   # a link is not walked into
        for name in folders + sorted(files):
            if _parts_match(parts, root_parts + (name,)):
                matches.append(os.path.join(root, name))
    return sorted(matches)


def _parts_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """``parts`` (a path's folder names and its name) match ``pattern``'s parts, where "**" stands for any number
    of folders (none included) and the others are fnmatch patterns; as in glob, a wildcard matches no hidden
    name."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_parts_match(rest, parts[i:]) for i in range(len(parts) + 1))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _parts_match(rest, parts[1:])


def _walk(folder: Path, prefix: PurePosixPath, recursive: bool, skip: Path | None,
          unreadable: list | None = None) -> list[InputItem]:
    """Image files under ``folder``, sorted, hidden ones and the excluded folder left out. Folders that cannot be
    listed go into ``unreadable`` as (name, reason), to be reported rather than passed over in silence."""
    items = []

    def cannot_list(error: OSError) -> None:
        if unreadable is not None:
            where = Path(error.filename or folder)
            name = str(prefix / where.relative_to(folder)) if where != folder else str(folder)
            unreadable.append((name, f"cannot read this folder: {error.strerror or error}"))

    for root, dirs, files in os.walk(folder, onerror=cannot_list):  # followlinks=False: no link loop traps us
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _excluded(root_path / d, skip)) \
            if recursive else []
        rel_root = prefix.joinpath(*root_path.relative_to(folder).parts)   # once per folder: thousands of files
        for file in sorted(files):
            if file.startswith(".") or not _is_image_name(file):
                continue
            items.append(_file_item(root_path / file, rel_root / file))
    return items


def _file_item(path: Path, rel: PurePosixPath) -> InputItem:
    """A file's item: shown by ``rel`` with unprintable characters escaped (a newline would break the one-line
    reports), its outputs named by ``rel`` with undecodable bytes replaced (a name of bytes that are not UTF-8,
    which the record of outputs and zip members cannot hold)."""
    rel = PurePosixPath(_decodable(str(rel)))
    stem = rel.with_suffix("") if rel.stem not in ("", ".", "..") else rel.with_name(_safe_stem(rel.stem))
    return InputItem(shown_name(str(rel)), stem, path=path)


def _decodable(name: str) -> str:
    """A file name read from the disk with undecodable bytes (Python keeps them as lone surrogates) made valid:
    each such byte becomes U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def shown_name(name: str) -> str:
    """A name as it is reported: control characters (a newline, a tab) written as escapes, on one line."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def _add_zip(path: Path, found: Discovery) -> None:
    try:
        archive = ZipInput(path)
    except (zipfile.BadZipFile, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a valid zip file"
        found.items.append(_failed(path.name, f"cannot open the archive: {reason}"))
        return
    found.archives.append(archive)
    items, nested, total = [], [], 0
    for info in archive.zip.infolist():
        if info.is_dir():
            continue
        rel = safe_member_path(info.filename)
        if rel is not None and _is_zip_name(rel) and not _is_junk(rel):
            nested.append(_failed(f"{path.name}/{rel}", NESTED_ARCHIVE))   # said, not passed over unseen
            continue
        if rel is None or not _is_image_name(rel.name) or _is_junk(rel):
            continue
        total += info.file_size
        error = _entry_problem(info, total)
        items.append(InputItem(str(rel), rel.with_suffix(""), archive=archive, member=info, error=error))
    items.sort(key=lambda item: (item.name, item.member.filename))
    found.items.extend(items)
    found.items.extend(sorted(nested, key=lambda item: item.name))
    if not items and not nested:
        found.items.append(_failed(path.name, "no images in this archive"))


def _entry_problem(info: zipfile.ZipInfo, total: int) -> str | None:
    if info.flag_bits & 0x1:
        return "encrypted zip entries are not supported"
    if info.file_size > MAX_ENTRY_BYTES:
        return (f"this zip entry declares {info.file_size / 2**20:,.0f} MB uncompressed, over the limit of "
                f"{MAX_ENTRY_BYTES >> 20} MB (zip bomb?)")
    if info.file_size > MIN_RATIO_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return (f"this zip entry expands {info.file_size / max(info.compress_size, 1):,.0f} times, "
                f"more than image data can (limit {MAX_RATIO}:1; zip bomb?)")
    if total > MAX_ARCHIVE_BYTES:
        return f"the archive expands to more than {MAX_ARCHIVE_BYTES >> 30} GB; entries past that are refused"
    return None


def safe_member_path(name: str) -> PurePosixPath | None:
    """A zip entry name as a harmless relative path, or None when nothing usable is left.

    Backslashes count as separators; drive letters, leading slashes, "." and ".." parts are dropped, so the
    result can never leave the folder it is joined to.
    """
    parts = []
    for part in name.replace("\\", "/").split("/"):
        part = _DRIVE.sub("", part) if not parts else part
        if part in ("", ".", "..") or "\x00" in part:
            continue
        parts.append(part)
    return PurePosixPath(*parts) if parts else None


def _is_junk(rel: PurePosixPath) -> bool:
    return rel.parts[0] == "__MACOSX" or any(part.startswith(".") for part in rel.parts)


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_zip_name(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def _safe_stem(stem: str) -> str:
    return stem if stem not in ("", ".", "..") else "image"


def _glob_base(pattern: str) -> Path:
    """The folder part of a pattern before its first wildcard: match names are kept relative to it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _relative(path: Path, base: Path) -> PurePosixPath:
    try:
        rel = path.relative_to(base)
    except ValueError:
        rel = Path(path.name)
    return safe_member_path(rel.as_posix()) or PurePosixPath(_safe_stem(path.stem))


def _excluded(path: Path, skip: Path | None) -> bool:
    return skip is not None and path.resolve() == skip


def _dangling(link) -> str:
    return f"a link to {os.readlink(link)}, which does not exist"


def _failed(name: str, message: str) -> InputItem:
    return InputItem(name, PurePosixPath("_"), error=message)
