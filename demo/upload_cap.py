"""A byte cap on Gradio's upload folder, which Gradio itself bounds only by age.

Gradio keeps every upload (and every image it serves) in its upload folder; ``delete_cache`` removes files
older than an hour, so under steady load the folder holds an hour of traffic, however large (the 8-user load
test wrote about 0.5 MiB/s). This sweeper removes the oldest files first whenever the folder is over its cap,
never one younger than ``min_age_s`` (a request may still be reading it), and never the app's own output folder
(demo/files.py bounds that one). A session whose old upload went keeps working: the engine holds the decoded
pixels, not the file.

Uploads reach the folder before the queue sees them, so a full queue does not slow them: with 32 visitors and an
8-event queue the folder grew 4.7 MiB/s on loopback, and faster links write more. Above ``hard_factor`` times
the cap the age rule shrinks to ``urgent_min_age_s``, so the folder's size is bounded by that rather than by
five minutes of uploads.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from matting.periodic import Periodic

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 << 30   # 2 GiB of uploads, with the 2 GiB of previews and downloads in demo/files.py
MIN_AGE_S = 300.0
HARD_FACTOR = 2.0         # over this many times the cap, files older than URGENT_MIN_AGE_S go too
URGENT_MIN_AGE_S = 30.0   # longer than a queued request waits for the network at the queue cap (about 25 s)
EVERY_S = 10.0


class UploadFolderCap(Periodic):
    thread_name = "matting-upload-cap"

    def __init__(self, folder: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, min_age_s: float = MIN_AGE_S,
                 every_s: float = EVERY_S, keep: str | Path | None = None, hard_factor: float = HARD_FACTOR,
                 urgent_min_age_s: float = URGENT_MIN_AGE_S):
        super().__init__()
        self.folder = Path(folder).resolve()
        self.max_bytes, self.min_age_s, self.every_s = max_bytes, min_age_s, every_s
        self.hard_bytes, self.urgent_min_age_s = int(max_bytes * hard_factor), urgent_min_age_s
        self.keep = Path(keep).resolve() if keep is not None else None
        self.removed_bytes = 0

    def sweep(self, now: float | None = None) -> int:
        """One pass: remove the oldest old-enough files while the folder is over the cap; bytes removed."""
        now = time.time() if now is None else now
        files, total = [], 0
        for root, dirs, names in os.walk(self.folder):
            if self.keep is not None and Path(root).resolve() == self.keep:
                dirs[:] = []
                continue
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
            for name in names:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue   # removed meanwhile
                files.append((st.st_mtime, st.st_size, path))
                total += st.st_size
        removed = 0
        for mtime, size, path in sorted(files):
            left, age = total - removed, now - mtime
            if left <= self.max_bytes:
                break
            if age < self.min_age_s and (left <= self.hard_bytes or age < self.urgent_min_age_s):
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            removed += size
            parent = os.path.dirname(path)
            if Path(parent).resolve() != self.folder:
                try:
                    os.rmdir(parent)   # Gradio's per-file hash folder, when now empty
                except OSError:
                    pass
        if removed:
            log.info("upload folder over %d MiB: removed %d MiB of the oldest files", self.max_bytes >> 20,
                     removed >> 20)
        self.removed_bytes += removed
        return removed

    def tick(self) -> None:
        self.sweep()
