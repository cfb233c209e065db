"""Where the app's preview and download files live: a private, bounded folder that is removed at exit.

The folder sits inside Gradio's upload folder, so Gradio serves the files as they are: no copy, no re-hash
(Gradio copies any returned file that lies outside that folder). Each browser session gets a sub-folder.
Bounds:

* per "slot" (say, the cutout preview of one session) only the newest ``keep_per_slot`` files stay: a slider
  drag writes a new file per render, and the browser only ever needs the last few;
* all sessions together stay under ``max_bytes``: the oldest files go first;
* a session's folder is dropped when its state expires (tab closed, time to live) and everything at exit.

No image logic: arrays are encoded with the engine's encoders (matting.encode).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import threading
import uuid
import zipfile
from collections import OrderedDict, deque
from pathlib import Path
from typing import Callable

import numpy as np

from matting.encode import encode

DEFAULT_MAX_BYTES = 2 << 30        # 2 GiB for every session's previews and downloads together
DEFAULT_KEEP_PER_SLOT = 4
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str | None, default: str = "image") -> str:
    """A file-name stem that is safe in a URL and in a zip: 'My photo (1).JPG' -> 'My_photo_1'."""
    stem = Path(name or "").stem
    stem = _SAFE.sub("_", stem).strip("._")[:80]
    return stem or default


def default_root() -> Path:
    """A fresh folder for this process inside Gradio's upload folder (GRADIO_TEMP_DIR or the system temp)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()) / f"matting-app-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class OutputStore:
    def __init__(self, root: str | Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep_per_slot: int = DEFAULT_KEEP_PER_SLOT, encoder: Callable[[np.ndarray, str], bytes] = encode):
        """``encoder(array, fmt)``: the engine's encoder in this thread, or a pool's (matting.batch_encode)."""
        self.encoder = encoder
        self.root = Path(root) if root else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.keep_per_slot = int(keep_per_slot)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._files: OrderedDict[Path, int] = OrderedDict()     # every file we wrote, oldest first -> size
        self._slots: dict[tuple[str, str], deque[Path]] = {}
        self._bytes = 0
        atexit.register(self.close)

    # ------------------------------------------------------------------ writing
    def session_dir(self, session: str | None) -> Path:
        path = self.root / safe_stem(session, "anonymous")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_image(self, session: str | None, slot: str, array: np.ndarray, fmt: str, name: str) -> str:
        """Encode ``array`` with the store's encoder to a new file; return its path.

        Every call gets a new path, so the browser always sees a new URL after a re-render.
        """
        data = self.encoder(array, fmt)
        return self.write_bytes(session, slot, data, f"{safe_stem(name)}.{fmt}")

    def write_bytes(self, session: str | None, slot: str, data: bytes, filename: str) -> str:
        folder = self.session_dir(session) / f"{next(self._counter):07d}"
        folder.mkdir()
        path = folder / filename
        tmp = folder / f".{filename}.part"
        tmp.write_bytes(data)
        tmp.replace(path)
        self._track(session, slot, [(path, len(data))])
        return str(path)

    def new_path(self, session: str | None, filename: str) -> Path:
        """A fresh, empty place for a file someone else writes (a zip); call ``adopt`` once it is written."""
        folder = self.session_dir(session) / f"{next(self._counter):07d}"
        folder.mkdir()
        return folder / filename

    def new_dir(self, session: str | None, name: str) -> Path:
        folder = self.session_dir(session) / f"{next(self._counter):07d}" / safe_stem(name, "files")
        folder.mkdir(parents=True)
        return folder

    def adopt(self, session: str | None, slot: str | None, path: str | Path) -> str:
        """Count a file written elsewhere under our root (zip, batch outputs) against the bounds."""
        path = Path(path)
        self._track(session, slot, [(path, path.stat().st_size)])
        return str(path)

    def adopt_all(self, session: str | None, paths, keep=()) -> None:
        """Count many files written elsewhere (a batch's outputs) in one pass over the budget; those in ``keep``
        (what the page shows of them) are never what goes. One at a time, each file past the budget went through
        every file held (20,000 outputs: 6 s), and the batch's own first outputs, the gallery's, went first."""
        self._track(session, None, [(Path(p), Path(p).stat().st_size) for p in paths], {Path(p) for p in keep})

    def _track(self, session: str | None, slot: str | None, entries: list[tuple[Path, int]], keep=()) -> None:
        """Record new files; drop what falls out of their slot and, past the byte budget, the oldest files."""
        doomed: list[Path] = []
        with self._lock:
            for path, size in entries:
                self._bytes += size - self._files.pop(path, 0)
                self._files[path] = size
                if slot is not None:
                    queue = self._slots.setdefault((session or "", slot), deque())
                    queue.append(path)
                    while len(queue) > self.keep_per_slot:
                        doomed.append(queue.popleft())
            for old in doomed:
                self._bytes -= self._files.pop(old, 0)
            if self._bytes > self.max_bytes:
                # What this session shows now stays; other files go oldest first, shown or not.
                newest = {q[-1] for (owner, _), q in self._slots.items() if q and owner == (session or "")}
                newest |= set(keep)
                newest.update(path for path, _ in entries[-1:])   # the file just written
                for old in list(self._files):
                    if self._bytes <= self.max_bytes:
                        break
                    if old not in newest:
                        self._bytes -= self._files.pop(old)
                        doomed.append(old)
        for old in doomed:
            _remove_file_and_empty_parent(old)

    # ------------------------------------------------------------------ zips
    def zip_files(self, session: str | None, slot: str | None, files: list[tuple[str | Path, str]],
                  filename: str) -> str:
        """Zip ``(path, name in zip)`` pairs into a new file. PNG and JPEG are already compressed: stored as is."""
        path = self.new_path(session, filename)
        tmp = path.with_name(f".{filename}.part")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for source, arcname in files:
                archive.write(source, arcname)
        tmp.replace(path)
        return self.adopt(session, slot, path)

    # ------------------------------------------------------------------ clean-up
    def drop_session(self, session: str | None) -> None:
        key = session or ""
        folder = self.root / safe_stem(session, "anonymous")
        with self._lock:
            for slot_key in [k for k in self._slots if k[0] == key]:
                del self._slots[slot_key]
            for path in [p for p in self._files if _is_under(p, folder)]:
                self._bytes -= self._files.pop(path)
        shutil.rmtree(folder, ignore_errors=True)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with self._lock:
            self._files.clear()
            self._slots.clear()
            self._bytes = 0


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _remove_file_and_empty_parent(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    try:
        path.parent.rmdir()   # the per-file folder; fails harmlessly when something else is in it
    except OSError:
        pass
