"""What made each output of a batch, so that a rerun skips only outputs made the same way and redoes the rest.

Each output is recorded with the input it came from (its name and a stamp: size and modification time of a
file, size and CRC of a zip member) and the recipe (model weights, precision, working-size cap, edge settings,
background, composite format, crop). A rerun skips an item only when every output it asks for exists and was
made from the same input by the same recipe; otherwise the item is redone and its outputs that the new recipe
does not make (a `_alpha.png` from an earlier `--alpha` run, say) are removed, so nothing stale stays beside
new work. Outputs with no record (made by something else, or by a version before this file) are redone.

The record is one JSON line per output, appended as outputs are written, so an interrupted run's finished work is
known to the next run: `.matting-outputs.jsonl` in an output folder, `.<name>.zip.matting-outputs.jsonl` beside an
output archive (batch_outputs: the sinks' ``manifest_path``). A run that finds most lines superseded (reruns with
other edges add a line per output each time) rewrites the file with the live records first.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path, PurePosixPath

from .batch_outputs import write_atomic

# Rewritten when it holds more lines than this many per live record, past COMPACT_MIN_LINES: 20,000 photos rerun
# six times with alternating edges left 240,000 lines, 201 ms to read before any image (2-core Xeon), and growing.
COMPACT_FACTOR = 2
COMPACT_MIN_LINES = 1000


def input_stamp(item) -> str:
    """What identifies the input's content without reading it."""
    if item.member is not None:
        return f"zip:{item.member.file_size}:{item.member.CRC}"
    if getattr(item, "url", None):
        return item.url_stamp
    try:
        stat = item.path.stat()
    except (OSError, AttributeError):
        return ""
    return f"file:{stat.st_size}:{stat.st_mtime_ns}"


def recipe_of(pipeline, settings, background, composite_format: str, crop) -> str:
    """A short hash of everything besides the input that shapes an output."""
    background = None if background is None else [int(c) for c in background]
    facts = {"model": getattr(pipeline, "_weights_id", None), "precision": getattr(pipeline, "precision", None),
             "max_side": getattr(pipeline, "max_side", None), "settings": settings.as_dict(),
             "background": background, "composite_format": composite_format,
             "crop": None if crop is None else str(crop)}
    return hashlib.sha1(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


class Manifest:
    """The records of one output location; ``add`` is thread-safe. The file stays open for appending until
    ``close`` (every line is flushed as written: a killed run's finished work is still known): opening it for each
    output cost 22 against 4 us a line (2-core AMD EPYC), which a run of several engines pays in the one process
    that records for all of them."""

    def __init__(self, path: Path, records: dict[str, dict]):
        self.path = path
        self.records = records
        # each input's output names: ``stale`` asks once per image, and a scan of every record made planning a
        # rerun quadratic (10,000 photos into a folder of 10,000 records: 3.4 s on a 2-core Xeon)
        self._by_input: dict[str, dict[str, None]] = {}
        for name, record in records.items():
            self._by_input.setdefault(record.get("input"), {})[name] = None
        self._lock = threading.Lock()
        self._handle = None

    @classmethod
    def load(cls, sink, overwrite: bool) -> "Manifest":
        path = sink.manifest_path
        text = ""
        if overwrite:
            path.unlink(missing_ok=True)
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
        records: dict[str, dict] = {}
        lines = text.splitlines()
        for line in lines:
            try:
                record = json.loads(line)
                if not isinstance(record.get("input"), (str, type(None))):
                    continue   # not a line we wrote (an input is a name)
                if record.get("input") is None:
                    records.pop(str(record["name"]), None)   # removed as stale
                else:
                    records[str(record["name"])] = record
            except (ValueError, KeyError, TypeError, AttributeError):
                continue   # a line cut short by a killed run
        manifest = cls(path, records)
        if len(lines) > COMPACT_FACTOR * len(records) + COMPACT_MIN_LINES:
            manifest._compact()
        return manifest

    def made_same(self, name: PurePosixPath, input_name: str, stamp: str, recipe: str) -> bool:
        record = self.records.get(str(name))
        return bool(record) and (record.get("input"), record.get("stamp"), record.get("recipe")) == (
            input_name, stamp, recipe)

    def stale(self, input_name: str, recipe: str, keep) -> list[PurePosixPath]:
        """Outputs recorded for this input, made by another recipe, that this run does not write again."""
        keep = {str(name) for name in keep}
        with self._lock:
            return [PurePosixPath(name) for name in self._by_input.get(input_name, ())
                    if self.records[name].get("recipe") != recipe and name not in keep]

    def add(self, name: PurePosixPath, input_name: str, stamp: str, recipe: str) -> None:
        record = {"name": str(name), "input": input_name, "stamp": stamp, "recipe": recipe}
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            self._unindex(str(name))
            self.records[str(name)] = record
            self._by_input.setdefault(input_name, {})[str(name)] = None
            self._append(line)

    def forget(self, name: PurePosixPath) -> None:
        """A stale output was removed: a tombstone line, so the next run does not count it either."""
        with self._lock:
            if self._unindex(str(name)) is not None:
                self._append(json.dumps({"name": str(name), "input": None}))

    def _unindex(self, name: str) -> dict | None:   # with the lock held: the record of ``name`` goes
        record = self.records.pop(name, None)
        if record is not None:
            self._by_input.get(record.get("input"), {}).pop(name, None)
        return record

    def _compact(self) -> None:
        """The file rewritten with the live records only, replaced at once (a run killed meanwhile leaves the old
        one). Best effort: a folder that cannot take the new file keeps the long one, which reads the same."""
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in self.records.values())
        try:
            write_atomic(self.path, text.encode("utf-8"))
        except OSError:
            pass   # write_atomic removed its part file

    def _append(self, line: str) -> None:   # with the lock held
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(line + "\n")
        self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
