"""Event functions of the web app. They call the engine and encode its arrays; no image logic here.

The network runs once per image (``pipe.matte``); the result, which holds the cached matte, stays in the
session's ``gr.State``. The page draws the result itself (demo/live_view.js) from a screen-sized payload: the
photo, the matte before the edge settings and the server's exact render, inline as data URLs, so no preview
file is written, copied or served. While a slider moves the page redraws on its own; when it is let go the page
asks ``exact_render`` (a component server function, outside the queue) for the exact preview. Full-resolution
files are encoded only when a download is asked for.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from matting.crop import CropMargin, crop_box, cut_to, parse_margin
from matting.decode import decode_image
from matting.encode import encode_jpeg, encode_png
from matting.errors import MattingError
from matting.hints import hint_mask_from_image, rasterize_strokes
from matting.pipeline import Pipeline
from matting.result import MatteResult
from matting.settings import EdgeSettings

from .controls import BG_IMAGE, DEFAULTS, EDGE_CONTROLS, Controls
from .files import OutputStore, safe_stem
from .i18n import Texts, texts_for
from .repeats import RecentFiles

log = logging.getLogger(__name__)

KINDS = ("cutout", "alpha", "composite")
MAX_BATCH_FILES = 500
GALLERY_LIMIT = 60          # cutouts shown in the batch gallery (all of them go into the zip)
BATCH_UI_INTERVAL_S = 0.3   # at most this often the batch table is re-sent while images complete
# ... and no more often than this many rows a second: each send is the whole table, so a batch of 20,000 images at
# 50 a second sent 1,284 tables (499 MB of JSON) and rebuilt every row each time (22.6 s of this process's CPU)
BATCH_UI_ROWS_PER_S = 5000
# Exact live-view renders at once (they bypass Gradio's queue): their GPU part takes turns anyway
# (Pipeline.device_turn); the encoding after it runs in parallel, one per core.
LIVE_RENDERS = max(4, os.cpu_count() or 1)
# Threads for the releases (demo/live_view.release_function): those beyond LIVE_RENDERS wait for a slot, which
# their reply reports (slot_wait); further releases wait in the event loop, holding no thread.
LIVE_THREADS = 2 * LIVE_RENDERS
# JPEG for the page's photo and colours: OpenCV encodes without holding the GIL (fpng's PNG holds it: 19 % of the
# GIL's time under 64 users on an H200, docs/RELIABILITY.md), in 3 ms and a quarter of the bytes of a PNG; 4:4:4
# keeps colour at full resolution; at quality 95 a 1024 px camera photo is about one level from the original.
PHOTO_QUALITY = 95
BG_QUALITY = 92             # a background image's screen-sized copy
COLOUR_QUALITY = 90         # the decontaminated colour (used only at soft edges, where it shows times alpha)
# Threads that encode the page's images beside the render (the encoders release the GIL; see _live_value).
_PAGE_POOL = ThreadPoolExecutor(max_workers=LIVE_RENDERS, thread_name_prefix="page-image")
DOWNLOADS = {"rgba": ("download-rgba", "png", "cutout"), "alpha": ("download-alpha", "png", "alpha"),
             "composite": ("download-composite", "jpg", "composite")}   # kind -> (store slot, format, file suffix)


@dataclass(eq=False)
class Current:
    """One session's image: the engine's result (with the cached matte) and what was made from it."""

    result: MatteResult
    stem: str
    session: str
    source: str                                  # the uploaded file it came from
    image_id: str = field(default_factory=lambda: uuid.uuid4().hex)   # the page's handle for exact renders
    downloads: dict = field(default_factory=dict)  # (kind, settings, background key, strokes) -> path
    page: dict = field(default_factory=dict)     # data URLs already made for the page, by what they show
    hints: np.ndarray | None = None              # the page's brush strokes as a mask at the working size
    strokes_hash: str = ""                       # of the strokes that made it
    strokes_id: int = 0                          # the page's number for them (echoed, so it knows what it sees)


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _ms(value: float) -> str:
    return f"{value:.0f}"


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def _upload_name(path: str | None) -> str | None:
    """The name the user's file had: Gradio keeps it as the last part of the uploaded path."""
    return Path(path).name if path else None


class Handlers:
    """Everything the UI and the API call, bound to one pipeline and one output store."""

    def __init__(self, pipe: Pipeline, store: OutputStore, *, lang: str = "auto",
                 max_batch_files: int = MAX_BATCH_FILES):
        self.pipe = pipe
        self.store = store
        self.lang = lang
        self.max_batch_files = max_batch_files
        self._cancels: dict[str, threading.Event] = {}
        self._cancels_lock = threading.Lock()
        # image_id -> the session's Current while gr.State holds it: the exact renders find it here
        self._live: weakref.WeakValueDictionary[str, Current] = weakref.WeakValueDictionary()
        self._live_slots = threading.BoundedSemaphore(LIVE_RENDERS)
        self._recent = RecentFiles()   # refused photos and background images, against Gradio's second report

    # ------------------------------------------------------------------ helpers
    def texts(self, request: gr.Request | None) -> Texts:
        return texts_for(self.lang, request)

    @staticmethod
    def crop_margin(crop, margin) -> CropMargin | None:
        """None without cropping, else the margin from its text box (raises InvalidParameterError)."""
        return parse_margin(margin if str(margin or "").strip() else "0") if crop else None

    @staticmethod
    def _background_key(background) -> Any:
        if background is None or isinstance(background, tuple):
            return background
        return ("image", id(background))

    @staticmethod
    def _settings_and_background(t: Texts, controls: Controls) -> tuple[EdgeSettings, Any] | None:
        """The engine's settings and background from the controls, or None after a warning saying which value is
        wrong."""
        try:
            return controls.settings(), controls.background()
        except (MattingError, TypeError, ValueError) as exc:
            gr.Warning(t("bad_setting", error=exc), title=t("toast_warning"))
            return None

    # ------------------------------------------------------------------ the page's live view
    def _page_image(self, current: Current, key: tuple, make) -> str:
        """A data URL made once per image and ``key`` (the photo, a soft matte, a background)."""
        url = current.page.get(key)
        if url is None:
            url = current.page[key] = make()
        return url

    def _exact(self, current: Current, settings: EdgeSettings) -> tuple[dict, float, float, dict]:
        """The server's exact preview for the page: its alpha (lossless PNG) and, with decontamination, the
        decontaminated colour (JPEG), which the page uses only in the soft edge (0 < alpha < 1), where an
        error shows times alpha; elsewhere it shows the photo's own colour. The background is composited in the
        page. Returns (exact, render ms, encode ms, the render's waits in ms: Rendered.waits)."""
        began = time.perf_counter()   # the render's wall time, its wait for the GPU's turn included (its own
        rendered = self.pipe.render(current.result, settings, preview=True, want_rgba=settings.decontaminate,
                                    hints=current.hints)   # timings on a GPU are its kernels' time alone)
        start = time.perf_counter()
        colour = None
        if settings.decontaminate:   # in a helper thread while this one encodes the alpha (both GIL-free)
            colour = _PAGE_POOL.submit(lambda: data_url(encode_jpeg(rendered.rgba[..., :3], quality=COLOUR_QUALITY,
                                                                    full_chroma=True), "image/jpeg"))
        alpha = data_url(encode_png(rendered.alpha), "image/png")
        exact = {"settings": self._settings_dict(settings), "strokes_id": current.strokes_id,
                 "alpha": alpha, "colour": colour and colour.result()}
        return exact, (start - began) * 1000, (time.perf_counter() - start) * 1000, rendered.waits

    @staticmethod
    def _settings_dict(settings: EdgeSettings) -> dict:
        return {"threshold": settings.threshold, "feather": settings.feather, "erode": settings.erode,
                "refine": settings.refine, "refine_radius": settings.refine_radius,
                "use_input_alpha": settings.use_input_alpha, "decontaminate": settings.decontaminate}

    @staticmethod
    def _soft_key(settings: EdgeSettings) -> str:
        return f"refine|{settings.refine_radius}" if settings.refine else "plain"

    def _soft(self, current: Current, settings: EdgeSettings) -> str:
        return self._soft_jobs(current, settings)[0].result()

    def _soft_jobs(self, current: Current, settings: EdgeSettings) -> tuple[Future, Future | None]:
        """Futures of the soft matte's data URL and, for an upload with an alpha of its own, that alpha's. The
        mattes are made now, in this thread (render.soft_at keeps the soft one, so the exact render that follows
        does not refine again); their PNGs in helper threads."""
        soft_key, own_key = ("soft", self._soft_key(settings)), ("own",)
        want_own = current.result.input_alpha is not None
        if soft_key in current.page and (not want_own or own_key in current.page):
            return _done(current.page[soft_key]), _done(current.page[own_key]) if want_own else None
        soft, own = self.pipe.soft_alpha(current.result, settings.with_(use_input_alpha=want_own), preview=True)
        return self._png_job(current, soft_key, soft), self._png_job(current, own_key, own) if want_own else None

    @staticmethod
    def _png_job(current: Current, key: tuple, matte: np.ndarray) -> Future:
        if key in current.page:
            return _done(current.page[key])

        def encode() -> str:
            current.page[key] = data_url(encode_png(matte), "image/png")
            return current.page[key]
        return _PAGE_POOL.submit(encode)

    def _live_value(self, current: Current, settings: EdgeSettings, bg_image, line: str) -> tuple[dict, float, float]:
        """Everything the page needs to draw this image and redraw its edges: (payload, render ms, encode ms).
        The page's images are made in helper threads while this one renders the exact preview: their encoders
        release the GIL, so a new photo's four images cost about the slowest one, not their sum."""
        result = current.result
        start = time.perf_counter()
        made = {"photo": _PAGE_POOL.submit(self._page_image, current, ("photo",), lambda: data_url(encode_jpeg(
            self.pipe.photo(result, preview=True), quality=PHOTO_QUALITY, full_chroma=True), "image/jpeg"))}
        made["soft"], made["own"] = self._soft_jobs(current, settings)
        if bg_image is not None:
            made["bg"] = _PAGE_POOL.submit(self._page_image, current, ("bg", id(bg_image)), lambda: data_url(
                encode_jpeg(self.pipe.background_preview(result, bg_image), quality=BG_QUALITY), "image/jpeg"))
        exact, render_ms, _, _ = self._exact(current, settings)
        made = {name: job.result() for name, job in made.items() if job is not None}
        photo, soft, own, bg = made["photo"], made["soft"], made.get("own"), made.get("bg")
        encode_ms = max(0.0, (time.perf_counter() - start) * 1000 - render_ms)   # wall time beyond the render
        height, width = self.pipe.photo_hw(result, preview=True)
        value = {"id": current.image_id, "w": width, "h": height, "scale": height / result.image.shape[0],
                 "photo": photo, "soft": soft, "soft_key": self._soft_key(settings), "own": own, "bg": bg,
                 "exact": exact, "settings": {**exact["settings"]}, "line": line}
        self._live[current.image_id] = current
        return value, render_ms, encode_ms

    def _take_strokes(self, current: Current, strokes, strokes_id) -> None:
        """The page's brush strokes (in preview pixels) drawn into the image's hint mask at the working size."""
        digest = hashlib.sha1(json.dumps(strokes, sort_keys=True).encode()).hexdigest()
        if digest != current.strokes_hash:
            height = current.result.image.shape[0]
            scale = height / self.pipe.photo_hw(current.result, preview=True)[0]
            current.hints = rasterize_strokes(strokes, tuple(current.result.image.shape[:2]), scale)
            current.strokes_hash = digest
        current.strokes_id = int(strokes_id)

    def exact_render(self, data: dict, request=None) -> dict:
        """The page's exact preview for new edge settings or brush strokes (a slider let go, a stroke ended):
        {exact, soft?, line}, or {stale} when this image is no longer held (the page then rebuilds it through the
        queue)."""
        t = self.texts(request)
        if not isinstance(data, dict):
            return {"error": t("bad_setting", error="expected an object of settings")}
        current = self._live.get(str(data.get("image_id", "")))
        if current is None:
            return {"stale": True}
        if data.get("probe"):   # before a download: is the photo still held? (live_view.js, sync)
            return {"held": True}
        try:
            settings = Controls(**{name: data.get(name) for name in EDGE_CONTROLS}).settings()
            self._take_strokes(current, data.get("strokes") or [], data.get("strokes_id", 0))
        except (MattingError, TypeError, ValueError) as exc:
            return {"error": t("bad_setting", error=exc)}
        start = time.perf_counter()
        with self._live_slots:
            slot_ms = (time.perf_counter() - start) * 1000
            exact, render_ms, encode_ms, waits = self._exact(current, settings)
            reply = {"exact": exact}
            soft_start = time.perf_counter()
            if data.get("soft_key") != self._soft_key(settings):
                reply["soft"], reply["soft_key"] = self._soft(current, settings), self._soft_key(settings)
            soft_ms = (time.perf_counter() - soft_start) * 1000
        total_ms = (time.perf_counter() - start) * 1000
        reply["line"] = t("timing_render", size=self._size_text(t, current.result), render=_ms(render_ms),
                          encode=_ms(encode_ms), total=_ms(total_ms))
        # For load tests: the client's wait beyond server_ms is transport; the parts say where the handler waited.
        reply["server_ms"] = round(total_ms, 1)
        reply["server_parts"] = {name: round(ms, 1) for name, ms in
                                 {"slot_wait": slot_ms, **waits, "encode": encode_ms, "soft": soft_ms}.items()}
        return reply

    def _size_text(self, t: Texts, result: MatteResult) -> str:
        (w0, h0), (w, h) = result.original_size, result.size
        return t("size_reduced", w0=w0, h0=h0, w=w, h=h) if result.was_reduced else t("size", w=w, h=h)

    def _notify(self, t: Texts, result: MatteResult) -> None:
        """Toasts for what the engine noticed, in the user's language (the downscale one with from, to and why)."""
        for notice in result.notices:
            reduced = getattr(notice, "code", None) == "reduced"   # 8 s: it covers the side panel's top
            gr.Info(t.notice(notice), duration=8 if reduced else 10, title=t("toast_info"))

    def _current_for(self, result: MatteResult, path: str, request: gr.Request | None) -> Current:
        stem = safe_stem(result.name or _upload_name(path))
        return Current(result=result, stem=stem, session=_session(request), source=str(path))

    def _restore(self, current: Current | None, path: str | None, t: Texts, request) -> Current | None:
        """The session's image, rebuilt from the displayed upload when the state is gone (expired, or evicted
        past the session limit). The engine's cache usually still holds the matte: the network rarely runs."""
        if current is not None or not path:
            return current
        if _upload_gone(path):
            gr.Warning(t("upload_expired"), duration=15, title=t("toast_warning"))
            return None
        try:
            result = self.pipe.matte(path, name=_upload_name(path))
        except (MattingError, OSError) as exc:
            gr.Warning(t("failed", error=t.error(exc)), title=t("toast_warning"))
            return None
        return self._current_for(result, path, request)

    # ------------------------------------------------------------------ single image
    def on_image(self, path, current: Current | None = None, request: gr.Request = None, progress=gr.Progress(),
                 **controls):
        """A new photo (upload, paste, example): run the network once, then hand the page its live view.
        ``controls``: the edge and background controls by name (demo/controls.py). Returns (state, live view
        payload)."""
        if not path:
            return None, None
        if current is not None and current.source == str(path):
            # Gradio's image input reports a replaced photo twice (its upload, then its stored value): the page
            # already shows this one.
            return gr.skip(), gr.skip()
        if self._recent.just_handled(_session(request), "image", path):
            return gr.skip(), gr.skip()   # the second report of a photo just refused: warned once is enough
        t = self.texts(request)
        start = time.perf_counter()
        progress(0.05, desc=t("stage_decode"))
        try:
            controls = Controls.of(controls)
            settings, background = controls.settings(), controls.background()
            result = self.pipe.matte(path, name=_upload_name(path))
        except MattingError as exc:
            gr.Warning(t("failed", error=t.error(exc)), duration=15, title=t("toast_warning"))
            self._recent.handled(_session(request), "image", path)
            # the photo shown before, its edges and brush strokes stay: a wrong file dropped should not cost them
            return (gr.skip(), gr.skip()) if current is not None else (None, None)
        progress(0.75, desc=t("stage_render"))
        current = self._current_for(result, path, request)
        self._notify(t, result)
        value, render_ms, encode_ms = self._live_value(current, settings, _image_or_none(background), "")
        timings = result.timings
        key = "timing_cached" if result.cached else "timing_first"
        total_ms = (time.perf_counter() - start) * 1000
        value["line"] = t(key, size=self._size_text(t, result),
                          decode=_ms(timings.get("decode", 0) + timings.get("hash", 0) + timings.get("upload", 0)),
                          network=_ms(timings.get("preprocess", 0) + timings.get("inference", 0)),
                          render=_ms(render_ms), encode=_ms(encode_ms), total=_ms(total_ms))
        value["server_ms"] = round(total_ms, 1)
        return current, value

    def on_live_refresh(self, current: Current | None, path, request: gr.Request = None, **controls):
        """The page's live view again, from the cached matte: after a new background image, or when the page
        found its image gone from the server (state expired or evicted). Returns (state, live view payload)."""
        t = self.texts(request)
        rebuilt = current is None
        current = self._restore(current, path, t, request)
        if current is None:
            # the photo is gone for good: clear the page's stale view (each later slider move asked again, and
            # warned again) rather than leave a picture nothing can be done with
            return (None, None) if _upload_gone(path) else (gr.skip(), gr.skip())
        start = time.perf_counter()
        chosen = self._settings_and_background(t, Controls.of(controls))
        if chosen is None:
            return gr.skip(), gr.skip()
        settings, background = chosen
        value, render_ms, encode_ms = self._live_value(current, settings, _image_or_none(background), "")
        value["line"] = t("timing_render", size=self._size_text(t, current.result), render=_ms(render_ms),
                          encode=_ms(encode_ms), total=_ms((time.perf_counter() - start) * 1000))
        if rebuilt:
            value["restored"] = True   # the page keeps its strokes and sends them again (live_view.js)
        return current, value

    def on_background_image(self, path, request: gr.Request):
        """A background image was uploaded: decode it once and keep it in the session."""
        if not path:
            return None
        if self._recent.just_handled(_session(request), "background", path):
            return gr.skip()   # Gradio's second report of this upload: decoded (or refused) already
        try:
            return decode_image(path, name=_upload_name(path)).rgb
        except MattingError as exc:
            t = self.texts(request)
            gr.Warning(t("bad_background", error=exc), title=t("toast_warning"))
            return None
        finally:
            self._recent.handled(_session(request), "background", path)

    def downloader(self, kind: str):
        """The event function of one download button: ``kind`` is "rgba", "alpha" or "composite"."""

        def download(current: Current | None, path, crop=False, crop_margin="0", request: gr.Request = None,
                     progress=gr.Progress(), **controls):
            return self._download(kind, current, path, Controls.of(controls), (crop, crop_margin), request, progress)

        download.__name__ = download.__qualname__ = f"download_{kind}"
        return download

    def _download(self, kind: str, current: Current | None, path, controls: Controls, cropping,
                  request: gr.Request, progress):
        """Encode one full-resolution file, only now that it is asked for (and once per setting)."""
        t = self.texts(request)
        if current is None and _upload_gone(path):   # "upload an image first" while one shows would puzzle
            raise gr.Error(t("upload_expired"), print_exception=False, title=t("toast_error"))
        current = self._restore(current, path, t, request)
        if current is None:
            # expected, not a fault: no traceback in the log
            raise gr.Error(t("no_image"), print_exception=False, title=t("toast_error"))
        if kind == "composite" and controls.bg_mode == BG_IMAGE and controls.bg_image is None:
            # none given yet, or it was refused: the "composite" would be a transparent PNG, the cutout again
            raise gr.Error(t("no_background_image"), print_exception=False, title=t("toast_error"))
        try:
            settings = controls.settings()
            background = controls.background() if kind == "composite" else None
            margin = self.crop_margin(*cropping)
        except (MattingError, TypeError, ValueError) as exc:
            raise gr.Error(t("bad_setting", error=exc), print_exception=False, title=t("toast_error")) from None
        key = (kind, settings, self._background_key(background), current.strokes_hash, margin)
        cached = current.downloads.get(key)
        if cached and Path(cached).exists():
            return gr.update(value=cached, visible=True)
        progress(0.1, desc=t("stage_download"))
        want_rgba = kind == "rgba" or (kind == "composite" and background is None)
        full = self.pipe.render(current.result, settings, background=background, preview=False, want_rgba=want_rgba,
                                hints=current.hints)
        if margin is not None:
            full.alpha, full.rgba, full.composite = cut_to(crop_box(full.alpha, margin), full.alpha, full.rgba,
                                                           full.composite)
        slot, fmt, suffix = DOWNLOADS[kind]
        pixels = {"rgba": full.rgba, "alpha": full.alpha, "composite": full.composite}[kind]
        if kind == "composite" and pixels is None:
            # transparent background: the composite is the cutout, and JPEG cannot hold transparency
            pixels, fmt = full.rgba, "png"
        path = self.store.write_image(current.session, slot, pixels, fmt, f"{current.stem}_{suffix}")
        current.downloads[key] = path
        return gr.update(value=path, visible=True)

    # ------------------------------------------------------------------ batch
    def _batch_inputs(self, t: Texts, files) -> list[str]:
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            raise gr.Error(t("no_files"), print_exception=False, title=t("toast_error"))
        if len(paths) > self.max_batch_files:
            raise gr.Error(t("too_many_files", n=len(paths), limit=self.max_batch_files), print_exception=False,
                           title=t("toast_error"))
        return paths

    def _row(self, t: Texts, result) -> list:
        size = f"{result.size[0]} × {result.size[1]}" if result.size else ""
        if result.status == "done":
            status = t("status_done")
        elif result.status == "skipped":
            status = t("status_skipped") + (f": {result.error}" if result.error else "")
        else:
            status = t("status_failed", error=t.error(result.error or "?", result.error_code))
        return [result.name, size, round(float(result.ms or 0)), status]

    def _table(self, t: Texts, rows: list[list]) -> dict:
        return {"headers": [t("col_name"), t("col_size"),
                            t("col_time"), t("col_status")],
                "data": rows}

    def empty_table(self, request: gr.Request | None = None) -> dict:
        return self._table(self.texts(request), [])

    def _start_batch(self, session: str, paths: list[str], out_dir: Path, settings: EdgeSettings, kinds,
                     background, crop: CropMargin | None = None) -> tuple[threading.Event, queue.Queue]:
        """run_batch in a worker thread; its per-image results come back through a queue."""
        from matting.batch import run_batch

        cancel = threading.Event()
        events: queue.Queue = queue.Queue()
        with self._cancels_lock:
            old = self._cancels.get(session)
            if old is not None:
                old.set()
            self._cancels[session] = cancel

        def work():
            try:
                summary = run_batch(paths, out_dir, pipeline=self.pipe, settings=settings, kinds=tuple(kinds),
                                    background=background, cancel=cancel, crop=crop,
                                    on_result=lambda r, i, n: events.put(("result", r, i, n)))
                events.put(("done", summary))
            except BaseException as exc:   # reported to the user; the server keeps serving
                log.exception("batch failed")
                events.put(("error", exc))

        threading.Thread(target=work, name=f"batch-{session[:8]}", daemon=True).start()
        return cancel, events

    def _finish_batch(self, session: str, cancel: threading.Event) -> None:
        with self._cancels_lock:
            if self._cancels.get(session) is cancel:
                del self._cancels[session]

    def _run_batch(self, t: Texts, session: str, paths: list[str], out_dir: Path, settings: EdgeSettings, kinds,
                   background, crop: CropMargin | None = None):
        """One batch, for the UI and the API alike: yields (result, index, total) as images finish and returns
        the summary; a failure of the engine is the user's error message; stopping early (the page left) stops
        the worker too."""
        cancel, events = self._start_batch(session, paths, out_dir, settings, kinds, background, crop)
        try:
            while True:
                event = events.get()
                if event[0] == "result":
                    yield event[1:]
                elif event[0] == "done":
                    return event[1]
                else:   # the worker logged it
                    raise gr.Error(t("failed", error=t.error(event[1])), print_exception=False,
                                   title=t("toast_error"))
        finally:
            cancel.set()
            self._finish_batch(session, cancel)

    def _collect(self, session: str, out_dir: Path, results, shown=()) -> str | None:
        """The zip of a finished batch's outputs (None when nothing came out); the files count against the
        store's budget from now on, those ``shown`` in the gallery kept."""
        archive = self._zip_outputs(session, out_dir, results)
        self._adopt_outputs(session, results, shown)
        return archive

    def _zip_outputs(self, session: str, out_dir: Path, results) -> str | None:
        files = []
        for result in results:
            if result.status != "done":
                continue
            for output in result.outputs:
                output = Path(output)
                if not output.exists():   # the page was closed mid-batch: on_unload dropped the session's files
                    continue
                try:
                    arcname = output.relative_to(out_dir).as_posix()
                except ValueError:
                    arcname = output.name
                files.append((output, arcname))
        if not files:
            return None
        return self.store.zip_files(session, "batch-zip", files, "matting-results.zip")

    def _adopt_outputs(self, session: str, results, shown=()) -> None:
        """Count the batch's files against the store's budget (after zipping: pruning may remove some, never
        those ``shown``)."""
        self.store.adopt_all(session, [output for result in results for output in result.outputs
                                       if Path(output).exists()], keep=shown)

    def on_batch(self, files, kinds, crop=False, crop_margin="0", request: gr.Request = None,
                 progress=gr.Progress(), **controls):
        """Run a batch; yields (table, gallery, zip, status) as images complete; cancel stops it promptly."""
        t = self.texts(request)
        paths = self._batch_inputs(t, files)
        try:
            controls = Controls.of(controls)
            settings, background = controls.settings(), controls.background()
            margin = self.crop_margin(crop, crop_margin)
        except MattingError as exc:
            raise gr.Error(t("bad_setting", error=exc), print_exception=False, title=t("toast_error")) from None
        kinds = [k for k in KINDS if k == "cutout" or k in (kinds or [])]
        if "composite" in kinds and background is None:
            kinds.remove("composite")   # nothing to composite onto: the cutouts already are that
        session = _session(request)
        out_dir = self.store.new_dir(session, "batch")
        run = self._run_batch(t, session, paths, out_dir, settings, kinds, background, margin)
        rows: list = []       # (order, row) of the results so far, in the order the files were given
        gallery: list[tuple[str, str]] = []
        last_sent = 0.0
        progress(0, desc=t("stage_batch", i=0, n=len(paths)))
        while True:
            try:
                result, index, total = next(run)
            except StopIteration as finished:
                summary = finished.value
                break
            bisect.insort(rows, (result.order, self._row(t, result)), key=lambda entry: entry[0])
            if result.status == "done" and result.outputs and len(gallery) < GALLERY_LIMIT:
                gallery.append((str(result.outputs[0]), result.name))
            progress((index, max(total, index)), desc=t("stage_batch", i=index, n=max(total, index)))
            now = time.perf_counter()
            if now - last_sent >= max(BATCH_UI_INTERVAL_S, len(rows) / BATCH_UI_ROWS_PER_S):
                last_sent = now
                yield self._table(t, [row for _, row in rows]), _shown(list(gallery)), _shown(None), ""
        rows = [self._row(t, r) for r in summary.results]
        gallery = [(str(r.outputs[0]), r.name) for r in summary.results
                   if r.status == "done" and r.outputs][:GALLERY_LIMIT]
        archive = self._collect(session, out_dir, summary.results, [path for path, _ in gallery])
        finished = sum(1 for r in summary.results if r.status == "done")
        if summary.cancelled:
            status = t("batch_cancelled", finished=finished)
        elif finished == 0:
            status = t("batch_none_done")
        else:
            status = t("batch_summary", done=summary.done, failed=summary.failed, skipped=summary.skipped,
                       seconds=summary.seconds, rate=summary.images_per_second)
        yield self._table(t, rows), _shown(gallery), _shown(archive), status

    def on_cancel(self, request: gr.Request):
        with self._cancels_lock:
            cancel = self._cancels.get(_session(request))
        if cancel is None:
            return gr.skip()
        cancel.set()
        return self.texts(request)("batch_cancelling")

    # ------------------------------------------------------------------ API-only endpoints
    def api_matte(self, image, threshold=0.0, feather=0.0, erode=0, refine=True,
                  decontaminate=DEFAULTS.decontaminate, hint=None, request: gr.Request = None):
        """/matte: image file in (and optionally a hint mask: 0 erases, 255 keeps, anything else leaves the
        model's matte; any size); full-resolution RGBA PNG, alpha PNG and a JSON report out."""
        t = self.texts(request)
        if not image:
            # expected, not a fault: no traceback in the log
            raise gr.Error(t("no_image"), print_exception=False, title=t("toast_error"))
        settings = self._settings_or_error(t, threshold, feather, erode, refine, decontaminate)
        try:
            result = self.pipe.matte(image, name=_upload_name(image))
        except MattingError as exc:
            raise gr.Error(t("failed", error=t.error(exc)), print_exception=False, title=t("toast_error")) from None
        hints = None
        if hint:
            try:
                mask = decode_image(hint, name=_upload_name(hint)).rgb
                hints = hint_mask_from_image(mask, tuple(result.image.shape[:2]))
            except MattingError as exc:   # said as the hint's: "this image" read as the photo
                raise gr.Error(t("bad_hint", error=t.error(exc)), print_exception=False,
                               title=t("toast_error")) from None
        full = self.pipe.render(result, settings, preview=False, hints=hints)
        session, stem = _session(request), safe_stem(result.name or _upload_name(image))
        cutout = self.store.write_image(session, "api-cutout", full.rgba, "png", f"{stem}_cutout")
        alpha = self.store.write_image(session, "api-alpha", full.alpha, "png", f"{stem}_alpha")
        report = {"name": result.name, "size": list(result.size), "original_size": list(result.original_size),
                  "was_reduced": result.was_reduced, "notices": list(result.notices),
                  "network_ran": not result.cached, "timings_ms": {k: round(v, 1) for k, v in result.timings.items()},
                  "render_ms": {k: round(v, 1) for k, v in full.timings.items()},
                  "model": self.pipe.info()}
        return cutout, alpha, report

    @staticmethod
    def _settings_or_error(t: Texts, threshold, feather, erode, refine, decontaminate) -> EdgeSettings:
        try:
            return Controls(threshold=threshold, feather=feather, erode=erode, refine=refine,
                            decontaminate=decontaminate).settings()
        except (MattingError, TypeError, ValueError) as exc:
            raise gr.Error(t("bad_setting", error=exc), print_exception=False, title=t("toast_error")) from None

    def api_batch(self, files, include_alpha=False, threshold=0.0, feather=0.0, erode=0, refine=True,
                  decontaminate=DEFAULTS.decontaminate, request: gr.Request = None):
        """/batch: files (images, zips) in; one zip of cutouts (and mattes) plus a per-file report out."""
        t = self.texts(request)
        paths = self._batch_inputs(t, files)
        settings = self._settings_or_error(t, threshold, feather, erode, refine, decontaminate)
        kinds = ("cutout", "alpha") if include_alpha else ("cutout",)
        session = _session(request)
        out_dir = self.store.new_dir(session, "batch")
        run = self._run_batch(t, session, paths, out_dir, settings, kinds, None)
        while True:   # blocking: the API answers once, when the batch is over
            try:
                next(run)
            except StopIteration as finished:
                summary = finished.value
                break
        archive = self._collect(session, out_dir, summary.results)
        if archive is None:   # nothing came out: an empty zip still lets the client read the report
            archive = self.store.zip_files(session, "batch-zip", [], "matting-results.zip")
        report = {"done": summary.done, "failed": summary.failed, "skipped": summary.skipped,
                  "cancelled": summary.cancelled, "seconds": round(summary.seconds, 3),
                  "results": [{"name": r.name, "status": r.status, "error": r.error,
                               "size": list(r.size) if r.size else None, "ms": round(float(r.ms or 0), 1),
                               "outputs": [Path(o).relative_to(out_dir).as_posix() if _under(o, out_dir)
                                           else Path(o).name for o in r.outputs]}
                              for r in summary.results]}
        return archive, report

    # ------------------------------------------------------------------ page life cycle
    def on_load(self, request: gr.Request):
        """Per page load: the model line and the empty results table, in the visitor's language."""
        t = self.texts(request)
        info = self.pipe.info()
        line = t("info", model=info["model"], device=info["device"], precision=info["precision"],
                 max_side=info["max_side"], load_ms=info["load_ms"])
        return line, self._table(t, [])

    def on_unload(self, request: gr.Request):
        session = _session(request)
        with self._cancels_lock:
            cancel = self._cancels.pop(session, None)
        if cancel is not None:
            cancel.set()
        self.store.drop_session(session)


def _upload_gone(path) -> bool:
    """The page names an upload whose file the server no longer has (Gradio's cache cleaning, the upload folder's
    cap): only a new upload helps, and the engine's "file not found: /tmp/gradio/..." would show a server path."""
    return bool(path) and not os.path.isfile(path)


def _shown(value):
    """An output box shown only with something in it: empty, a gallery or file box looks like a drop zone."""
    return gr.update(value=value, visible=bool(value))


def _done(value) -> Future:
    """A future that already holds ``value``."""
    future: Future = Future()
    future.set_result(value)
    return future


def _image_or_none(background):
    """The background when it is an image (the page composites colours itself), else None."""
    return background if isinstance(background, np.ndarray) else None


def _under(path, folder: Path) -> bool:
    try:
        Path(path).relative_to(folder)
        return True
    except ValueError:
        return False
