"""Where a batch's outputs go: file names, collisions, and the two sinks (a folder or a zip archive).

Names, per item ``rel`` ("a/x" for a/x.jpg in a folder, "x" for an explicit x.jpg):
    cutout     rel + ".png"                  RGBA
    alpha      rel + "_alpha.png"            8-bit grey
    composite  rel + "_composite.jpg|png"    RGB on the chosen background

Collisions (x.jpg and x.png, two folders both holding x.jpg, or x.jpg's x_alpha.png against an input named
x_alpha.jpg) are settled in input order: the first keeps its name, the next becomes x_2, then x_3, and so on,
compared case-insensitively so the outputs survive on case-insensitive file systems. The same inputs always give
the same names, so a rerun finds the outputs of an interrupted run and skips them.

Folder output: every file is written to a hidden temporary name and renamed into place, so a file that exists is
complete; "all of an item's outputs exist" is what resume checks.
Zip output: written to a temporary archive beside the target and renamed over it when the run ends (also when it
is cancelled), so the archive on disk is always whole. Resume: members already in an existing archive are copied
over and their items skipped; ``overwrite`` starts a fresh archive. A run that is killed leaves the previous
archive untouched and its own work is lost.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from .batch_inputs import in_real_folder
from .batch_urls import is_url
from .errors import OutputError

KINDS = ("cutout", "alpha", "composite")
MANIFEST_NAME = ".matting-outputs.jsonl"   # the batch's record of what made each output (batch_manifest.py)
COMPOSITE_FORMATS = ("jpg", "png")


def output_names(rel: PurePosixPath, kinds, composite_format: str) -> dict[str, PurePosixPath]:
    stem = rel.name
    names = {"cutout": f"{stem}.png", "alpha": f"{stem}_alpha.png",
             "composite": f"{stem}_composite.{composite_format}"}
    return {kind: rel.with_name(names[kind]) for kind in kinds}


def allocate_names(rels: list[PurePosixPath], kinds, composite_format: str) -> list[dict[str, PurePosixPath]]:
    """Output names for each item, unique across the batch (see the module docstring)."""
    taken: set[str] = set()
    # the number each name (case folded) was last given: the numbers below it are taken for good, so the next
    # input of that name starts above it (starting at 1 each time made k inputs of one name cost k^2 tries: 200
    # folders of the same 100 photo names took 8 s to name)
    last: dict[str, int] = {}
    allocated = []
    for rel in rels:
        key = str(rel).casefold()
        n = last.get(key, 0) + 1
        while True:
            candidate = rel if n == 1 else rel.with_name(f"{rel.name}_{n}")
            names = output_names(candidate, kinds, composite_format)
            keys = {str(name).casefold() for name in names.values()}
            if not keys & taken:
                break
            n += 1
        last[key] = n
        taken |= keys
        allocated.append(names)
    return allocated


def write_atomic(target: Path, data: bytes) -> Path:
    """A hidden temporary file renamed into place: readers (and resume) never see half a file. Thread-safe."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def refuse_output_that_is_an_input(inputs, output: str | os.PathLike) -> None:
    """OutputError, before anything is opened or written, when the output is no name at all or is itself one of
    the inputs (a folder given as both, or an input .zip named as the output): its cutouts would replace the
    photos. Single photos inside the output folder are guarded one by one (inputs_in_folder)."""
    text = os.fspath(output)
    if not text.strip():
        raise OutputError("the output is an empty name: name a folder, or a path ending in .zip")
    if "\0" in text:   # only through the API (a command line cannot hold one)
        raise OutputError("the output name holds a NUL character, which no file name can")
    try:
        target = os.stat(text)
    except OSError:
        return   # nothing there yet, so no input is it
    # The same file or folder, whatever the names and links: one stat an input (a resolve was five or more system
    # calls for each of thousands of photos named on the command line).
    for raw in [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs:
        raw = os.fspath(raw)
        if raw.strip() and not is_url(raw) and _same_file(raw, target):
            raise OutputError(f"the output {text} is also an input: the cutouts would overwrite the photos "
                              f"(name another folder or .zip)")


def _same_file(path: str, target: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), target)
    except (OSError, ValueError):   # missing, unreadable or no name the system takes: not the output
        return False


def inputs_in_folder(paths, root: Path) -> set[str]:
    """The input files among ``paths`` that lie in the output folder ``root``, as the paths an output written there
    would replace (their folders resolved, once per folder; a link, the file it points to): what a planned output
    must never be (FolderSink.overwrites). Strings compared by prefix: a rerun asks this of every input (Paths and
    their parents were half of planning a resumed run of 10,000 photos)."""
    root_text = os.path.join(os.path.realpath(root), "")   # with a trailing separator: "out2" is not in "out"
    folders: dict[str, str] = {}
    inside = set()
    for path in paths:
        # a photo found elsewhere through a link to a file in the output folder would be replaced there too
        where = os.path.realpath(path) if os.path.islink(path) else in_real_folder(path, folders)
        if where.startswith(root_text):
            inside.add(where)
    return inside


def open_sink(output: str | os.PathLike, overwrite: bool = False) -> "FolderSink | ZipSink":
    path = Path(output)
    if path.suffix.lower() == ".zip" and not path.is_dir():
        return ZipSink(path, overwrite)
    return FolderSink(path)


class FolderSink:
    def __init__(self, root: Path):
        if root.exists() and not root.is_dir():
            raise OutputError(f"the output {root} exists and is not a folder (name a folder, or a .zip file)")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {root}: {exc.strerror or exc}") from None
        self.root = root
        self.folder = root
        self._root_text = os.fspath(root)
        self._resolved = os.path.realpath(root)   # for overwrites: once, not for every image whose outputs exist

    def has(self, name: PurePosixPath) -> bool:
        # asked for every output of every photo while a run is planned: a string, not a Path, per name (planning
        # 2000 photos into a fresh folder: 27.8 -> 23.5 ms on a 2-core Xeon, scripts/batch_plan.py)
        self._check(name)
        return os.path.isfile(os.path.join(self._root_text, str(name)))

    def shown(self, name: PurePosixPath) -> Path:
        """How an output is reported: its path on disk."""
        return self._path(name)

    def prepared(self, name: PurePosixPath) -> Path:
        """The file an output goes to, its folder created: encoder processes write there themselves."""
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)   # each time: a folder deleted mid-run comes back
        return target

    def close(self) -> None:
        pass

    @property
    def manifest_path(self) -> Path:
        """Where the batch keeps its record of the outputs (batch_manifest.py): hidden, in the output folder."""
        return self.root / MANIFEST_NAME

    def remove(self, name: PurePosixPath | str) -> None:
        """A stale output goes (batch_manifest.py)."""
        self._path(PurePosixPath(name)).unlink(missing_ok=True)

    def overwrites(self, names, inputs: set[str]) -> PurePosixPath | None:
        """The first of ``names`` whose file would be one of ``inputs`` (inputs_in_folder), else None."""
        return next((name for name in names if os.path.join(self._resolved, str(name)) in inputs), None)

    def _path(self, name: PurePosixPath) -> Path:
        self._check(name)
        return self.root.joinpath(*name.parts)

    @staticmethod
    def _check(name: PurePosixPath) -> None:
        if name.is_absolute() or ".." in name.parts:  # names come from safe_member_path; stay defensive
            raise OutputError(f"unsafe output name {name}")


class ZipSink:
    def __init__(self, path: Path, overwrite: bool):
        self.path = path
        self.folder = path.parent
        self._old: zipfile.ZipFile | None = None
        self._old_names: set[str] = set()
        if path.exists() and not overwrite:
            try:
                self._old = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError):
                raise OutputError(f"the output {path} exists and is not a readable zip file "
                                  "(use --overwrite to replace it)") from None
            self._old_names = {info.filename for info in self._old.infolist()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
            self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_STORED)  # PNG/JPEG do not deflate further
        except OSError as exc:
            raise OutputError(f"cannot write the archive {path}: {exc.strerror or exc}") from None
        self._new_names: set[str] = set()
        self._removed: set[str] = set()
        self._lock = threading.Lock()

    def has(self, name: PurePosixPath) -> bool:
        return str(name) in self._old_names and str(name) not in self._removed

    @property
    def manifest_path(self) -> Path:
        """The record of the outputs (batch_manifest.py) sits beside the archive, hidden: the archive holds only
        the outputs. Records of members a killed run never put in place name nothing that exists: harmless."""
        return self.path.with_name(f".{self.path.name}{MANIFEST_NAME}")

    def remove(self, name: PurePosixPath | str) -> None:
        """A stale member is not carried over into the new archive (batch_manifest.py)."""
        with self._lock:
            self._removed.add(str(name))

    def shown(self, name: PurePosixPath) -> Path:
        """How an output is reported: its member name."""
        return Path(str(name))

    def write(self, name: PurePosixPath, data: bytes) -> PurePosixPath:
        info = zipfile.ZipInfo(str(name), date_time=time.localtime()[:6])
        info.external_attr = 0o644 << 16
        with self._lock:
            self._zip.writestr(info, data)
            self._new_names.add(str(name))
        return name

    def close(self) -> None:
        """Copy the old archive's members not written again, then put the new archive in place."""
        with self._lock:
            try:
                if self._old is not None:
                    for info in self._old.infolist():
                        if info.filename not in self._new_names and info.filename not in self._removed:
                            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                            copy.external_attr, copy.compress_type = info.external_attr, info.compress_type
                            with self._old.open(info) as src, self._zip.open(copy, "w") as dst:
                                while chunk := src.read(1 << 20):
                                    dst.write(chunk)
                    self._old.close()
                self._zip.close()
                os.replace(self._tmp, self.path)
            except BaseException:
                self._tmp.unlink(missing_ok=True)
                raise
