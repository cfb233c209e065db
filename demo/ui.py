"""The Gradio Blocks layout: which components exist and which handler each event calls. No image logic.

    demo = build_demo(pipe, lang="auto")
    demo.launch(**launch_options(lang="auto"), server_port=7860)

Layout: a header with the model line; on the left two tabs (single image, batch), on the right the edge and
background controls that both tabs use. Hidden components carry the API-only endpoints /matte and /batch.
"""

from __future__ import annotations

import atexit
import os
import sys

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before gradio is imported: nothing leaves the machine

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from matting.assets import assets_dir  # noqa: E402
from matting.batch_encode import download_encoder  # noqa: E402
from matting.pipeline import Pipeline  # noqa: E402
from matting.settings import EdgeSettings  # noqa: E402

from .components import UploadImage  # noqa: E402
from .files import OutputStore  # noqa: E402
from .upload_cap import UploadFolderCap  # noqa: E402
from .controls import BACKGROUND_CONTROLS, BG_COLOR, BG_IMAGE, BG_TRANSPARENT, EDGE_CONTROLS  # noqa: E402
from .handlers import Handlers  # noqa: E402
from .i18n import EN, ZH, check_lang, translations  # noqa: E402
from .live_view import CSS as LIVE_CSS, INPUT_JS, RELEASE_JS, live_view  # noqa: E402

EXAMPLES_DIR = assets_dir() / "examples"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

QUEUE_MAX_SIZE = 64           # waiting events across all users; past it the client gets "queue full"
NETWORK_CONCURRENCY = 1       # uploads handled at once on the CPU (torch already uses every core for one)
# On CUDA: they decode in parallel and share network batches (matting/coalesce.py); mostly they wait for the GPU's
# turn. Under 64 users on the H200, 32 instead of 16 cut an upload's wait in Gradio's queue at p95 from 1.1-1.2 to
# 0.7 s (the upload's p95 as a whole did not move; docs/RELIABILITY.md, session 19).
NETWORK_CONCURRENCY_CUDA = 32
RENDER_CONCURRENCY = 4        # re-renders at once: cheap, screen-sized
ENCODE_CONCURRENCY = 2        # full-resolution download encodes at once
BATCH_CONCURRENCY = 1         # batches at once (each batch keeps the device busy on its own)
ANALYTICS_EVERY = 1_000       # events between Gradio's queue summaries (its default: every event)
ANALYTICS_EVENTS = 1_000      # the events it summarises (its default: 10,000)
MAX_FILE_SIZE = "100mb"       # per uploaded file
DELETE_CACHE = (1800, 3600)   # every 30 min, delete Gradio's cached uploads older than 1 h
UPLOAD_FOLDER_MAX_BYTES = 2 << 30  # and keep them under 2 GiB, oldest first (demo/upload_cap.py)
STATE_TTL_S = 3600            # a session's cached matte lives this long after its last change
STATE_SESSIONS = 200          # sessions whose state stays in memory (an 8 MP photo holds about 35 MB); an
                              # evicted session's next edit rebuilds it from its upload and the engine's cache

# The checkerboard behind transparent images is drawn by the browser (CSS), never computed in Python.
CSS = """
.checker img, .checker canvas {
  background-color: #ffffff;
  background-image:
    linear-gradient(45deg, #d4d4d4 25%, transparent 25%),
    linear-gradient(-45deg, #d4d4d4 25%, transparent 25%),
    linear-gradient(45deg, transparent 75%, #d4d4d4 75%),
    linear-gradient(-45deg, transparent 75%, #d4d4d4 75%);
  background-size: 16px 16px;
  background-position: 0 0, 0 8px, 8px -8px, -8px 0;
}
#title p { font-size: 1.6em; font-weight: 650; margin: 0; }
#downloads-title p { font-weight: 600; margin: 0; }
/* Toasts at the bottom right: at Gradio's top right they covered the Edges panel's header for seconds. */
.toast-wrap { top: auto !important; bottom: var(--size-4) !important; }
/* The colour swatch: a white one would vanish into the white block without an outline of its own. */
#bg-color button.dialog-button { border: 1px solid #a1a1aa; border-radius: 6px;
  min-width: 48px; min-height: 28px; box-shadow: inset 0 0 0 1px rgba(0, 0, 0, 0.08); }
#timings, #model-info { font-size: 0.85em; opacity: 0.85; }
#timings p, #model-info p { margin: 0; }
"""

# Before a download button's handler runs: the server holds the page's photo and strokes (live_view.js, sync).
SYNC_JS = """
async (...inputs) => {
  if (window.mattingLive && window.mattingLive.sync) await window.mattingLive.sync();
  return inputs;
}
"""
# After a download button's handler has written the file, save it in the browser: one click, one file.
DOWNLOAD_JS = """
(file) => {
  if (!file || !file.url) { return; }
  const link = document.createElement("a");
  link.href = file.url;
  link.download = file.orig_name || "";
  document.body.appendChild(link);
  link.click();
  link.remove();
}
"""


def theme() -> gr.themes.Base:
    """The default look with system fonts: no web font is requested from anywhere."""
    return gr.themes.Default(font=["system-ui", "-apple-system", "Segoe UI", "Noto Sans", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])


def example_files() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)


def upload_folder_cap() -> int:
    """Bytes Gradio's upload folder may hold before the oldest files go: $MATTING_UPLOAD_FOLDER_MB or 2 GiB."""
    value = os.environ.get("MATTING_UPLOAD_FOLDER_MB", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value) << 20
    if value:  # a typo must not pass unnoticed: say which value is used instead
        print(f"warning: MATTING_UPLOAD_FOLDER_MB={value!r} is not a positive whole number of MiB; using "
              f"{UPLOAD_FOLDER_MAX_BYTES >> 20}", file=sys.stderr)
    return UPLOAD_FOLDER_MAX_BYTES


def build_demo(pipe: Pipeline, *, lang: str = "auto", store: OutputStore | None = None,
               network_concurrency: int | None = None, queue_size: int | None = None) -> gr.Blocks:
    """The app around one loaded pipeline. ``lang``: "auto" (browser), "en" or "zh"."""
    lang = check_lang(lang)
    i18n = gr.I18n(**translations(lang))
    if store is None:
        encoder = download_encoder(pipe.device)   # GPU: helper processes, so downloads leave the GIL free
        atexit.register(encoder.close)
        store = OutputStore(encoder=encoder.one)
    handlers = Handlers(pipe, store, lang=lang)
    if network_concurrency is None:
        network_concurrency = NETWORK_CONCURRENCY_CUDA if pipe.device.type == "cuda" else NETWORK_CONCURRENCY
    defaults = EdgeSettings()

    # The page title is plain text (an I18n key is not translated there): both languages unless one is forced.
    page_title = {"en": EN["title"], "zh": ZH["title"]}.get(lang, f"{EN['title']} · {ZH['title']}")
    with gr.Blocks(title=page_title, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        demo.handlers = handlers   # tests and scripts reach the pipeline and the store through it
        gr.Markdown(i18n("title"), elem_id="title")
        gr.Markdown(i18n("subtitle"))
        info = gr.Markdown(elem_id="model-info")
        current = gr.State(None, time_to_live=STATE_TTL_S)
        bg_image_state = gr.State(None, time_to_live=STATE_TTL_S)

        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab(i18n("tab_single"), id="single", elem_id="tab-single"):
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=2, min_width=280):
                                image = UploadImage(type="filepath", image_mode=None, label=i18n("input"),
                                                    sources=["upload", "clipboard"], height=340,
                                                    elem_id="input-image")
                                examples = example_files()
                                if examples:
                                    gr.Examples(examples=[[p] for p in examples], inputs=[image],
                                                label=i18n("examples"), examples_per_page=8,
                                                elem_id="examples")
                            with gr.Column(scale=3, min_width=320):
                                live = live_view(handlers, lang=lang)
                                demo.live_view = live   # tests and scripts call its exact_render
                        # Not in a gr.Group: there buttons lose their borders and read as plain text in a grey bar.
                        with gr.Column(elem_id="downloads"):
                            gr.Markdown(i18n("downloads"), elem_id="downloads-title")
                            with gr.Row():
                                dl_rgba = gr.Button(i18n("dl_rgba"), elem_id="download-rgba", variant="primary")
                                dl_alpha = gr.Button(i18n("dl_alpha"), elem_id="download-alpha", variant="secondary")
                                # Shown with a background only: on a transparent one it would be the cutout again.
                                dl_composite = gr.Button(i18n("dl_composite"), elem_id="download-composite",
                                                         variant="secondary", visible=False)
                            dl_file = gr.File(label=i18n("dl_files"), interactive=False, elem_id="download-file",
                                              visible=False)

                    with gr.Tab(i18n("tab_batch"), id="batch", elem_id="tab-batch"):
                        gr.Markdown(i18n("batch_intro"))
                        with gr.Row(equal_height=False):
                            batch_files = gr.File(file_count="multiple", label=i18n("batch_files"),
                                                  elem_id="batch-files", height=320, scale=3)
                            with gr.Column(scale=2, min_width=240):
                                batch_kinds = gr.CheckboxGroup(
                                    [(i18n("kind_cutout"), "cutout"), (i18n("kind_alpha"), "alpha"),
                                     (i18n("kind_composite"), "composite")],
                                    value=["cutout"], label=i18n("batch_include"), elem_id="batch-kinds")
                                with gr.Row():
                                    batch_run = gr.Button(i18n("batch_run"), variant="primary", elem_id="batch-run")
                                    # red ("stop") only while a batch runs: a red button that does nothing alarms
                                    batch_cancel = gr.Button(i18n("batch_cancel"), variant="secondary",
                                                             elem_id="batch-cancel", interactive=False)
                        batch_status = gr.Markdown(elem_id="batch-status")
                        batch_table = gr.Dataframe(label=i18n("batch_table"), interactive=False, wrap=True,
                                                   elem_id="batch-table", max_height=320,
                                                   column_widths=["34%", "16%", "12%", "38%"])
                        batch_gallery = gr.Gallery(label=i18n("batch_gallery"), columns=6, height=220,
                                                   object_fit="contain", fit_columns=False, elem_id="batch-gallery",
                                                   elem_classes="checker", buttons=["fullscreen"], visible=False)
                        batch_zip = gr.File(label=i18n("batch_zip"), interactive=False, elem_id="batch-zip",
                                            height=80, visible=False)

            with gr.Column(scale=1, min_width=250):
                with gr.Group():
                    gr.Markdown(i18n("edges"), padding=True, elem_id="edges-title")
                    threshold = gr.Slider(0, 1, value=defaults.threshold, step=0.01, label=i18n("threshold"),
                                          info=i18n("threshold_info"), elem_id="threshold")
                    feather = gr.Slider(0, 50, value=defaults.feather, step=0.5, label=i18n("feather"),
                                        info=i18n("feather_info"), elem_id="feather")
                    erode = gr.Slider(-50, 50, value=defaults.erode, step=1, label=i18n("erode"),
                                      info=i18n("erode_info"), elem_id="erode")
                    refine = gr.Checkbox(value=defaults.refine, label=i18n("refine"), elem_id="refine")
                    refine_radius = gr.Slider(1, 32, value=defaults.refine_radius, step=1,
                                              label=i18n("refine_radius"), elem_id="refine-radius")
                    use_input_alpha = gr.Checkbox(value=defaults.use_input_alpha, label=i18n("use_input_alpha"),
                                                  elem_id="use-input-alpha")
                    decontaminate = gr.Checkbox(value=defaults.decontaminate, label=i18n("decontaminate"),
                                                elem_id="decontaminate")
                    reset = gr.Button(i18n("reset"), size="sm", elem_id="reset")
                with gr.Group():
                    gr.Markdown(i18n("background"), padding=True)
                    bg_mode = gr.Radio([(i18n("bg_transparent"), BG_TRANSPARENT), (i18n("bg_color"), BG_COLOR),
                                        (i18n("bg_image"), BG_IMAGE)], value=BG_TRANSPARENT,
                                       label=i18n("bg_mode"), elem_id="bg-mode")
                    bg_color = gr.ColorPicker("#ffffff", label=i18n("bg_color_pick"), elem_id="bg-color",
                                              visible=False)
                    bg_image = UploadImage(type="filepath", image_mode=None, label=i18n("bg_image_upload"),
                                           sources=["upload", "clipboard"], height=140, elem_id="bg-image",
                                           visible=False)
                with gr.Group():
                    crop = gr.Checkbox(False, label=i18n("crop"), info=i18n("crop_info"), elem_id="crop")
                    crop_margin = gr.Textbox("10", label=i18n("crop_margin"), max_lines=1, elem_id="crop-margin")

        # API-only endpoints: hidden inputs and outputs, named for gradio_client.
        with gr.Column(visible=False):
            api_image = gr.File(label="image")
            api_files = gr.File(label="files", file_count="multiple")
            api_threshold = gr.Number(0.0, label="threshold")
            api_feather = gr.Number(0.0, label="feather")
            api_erode = gr.Number(0, label="erode", precision=0)
            api_refine = gr.Checkbox(True, label="refine")
            api_decontaminate = gr.Checkbox(defaults.decontaminate, label="decontaminate")
            api_include_alpha = gr.Checkbox(False, label="include_alpha")
            api_hint = gr.File(label="hint")
            api_cutout = gr.File(label="cutout")
            api_alpha = gr.File(label="alpha")
            api_report = gr.JSON(label="report")
            api_zip = gr.File(label="zip")
            api_matte_button = gr.Button("matte")
            api_batch_button = gr.Button("batch")

        edges = [threshold, feather, erode, refine, refine_radius, use_input_alpha, decontaminate]
        background = [bg_mode, bg_color, bg_image_state]
        # The handlers take these by name (demo/controls.py); on the wire they follow the positional inputs.
        controls = dict(zip(EDGE_CONTROLS + BACKGROUND_CONTROLS, edges + background, strict=True))
        live_outputs = [current, live]

        # A new photo: the network runs once; the result (the cached matte) goes into the session state and the
        # page gets what it needs to draw it (demo/live_view.py).
        image.change(handlers.on_image, inputs=[image], inputs_kwargs={**controls, "current": current},
                     outputs=live_outputs,
                     api_name="upload", api_visibility="undocumented", concurrency_id="network",
                     concurrency_limit=network_concurrency, trigger_mode="always_last")

        # Controls: JavaScript only, no request. While a control moves the page redraws the edges itself; when
        # it is let go (or typing pauses) the page asks the server's exact_render, outside the queue.
        page_inputs = [*edges, bg_mode, bg_color]
        hook = dict(inputs=page_inputs, api_visibility="private", queue=False, show_progress="hidden")
        for control in (threshold, feather, erode, refine_radius):
            control.change(None, js=INPUT_JS, **hook)
            control.release(None, js=RELEASE_JS, **hook)
        for control in (refine, use_input_alpha, decontaminate):
            control.change(None, js=RELEASE_JS, **hook)
        for control in (bg_mode, bg_color):
            control.change(None, js=INPUT_JS, **hook)
            control.input(None, js=INPUT_JS, **hook)
        refresh_kwargs = dict(inputs=[current, image], inputs_kwargs=controls, outputs=live_outputs,
                              show_progress="hidden", concurrency_id="render", concurrency_limit=RENDER_CONCURRENCY)
        # The page lost its image on the server (state expired or evicted): rebuild it from the upload.
        live.restore(handlers.on_live_refresh, api_visibility="private", trigger_mode="always_last",
                     **refresh_kwargs)
        bg_mode.change(lambda mode: (gr.update(visible=mode == BG_COLOR), gr.update(visible=mode == BG_IMAGE),
                                     gr.update(visible=mode != BG_TRANSPARENT)),
                       inputs=[bg_mode], outputs=[bg_color, bg_image, dl_composite], queue=False,
                       api_visibility="private", show_progress="hidden")
        bg_image.change(handlers.on_background_image, inputs=[bg_image], outputs=[bg_image_state],
                        api_visibility="private", concurrency_id="render").then(
            handlers.on_live_refresh, api_name="refresh", api_visibility="undocumented", **refresh_kwargs)

        # Reset sets the controls; their change events redraw the page and fetch the exact preview.
        reset.click(lambda: [defaults.threshold, defaults.feather, defaults.erode, defaults.refine,
                             defaults.refine_radius, defaults.use_input_alpha, defaults.decontaminate],
                    outputs=edges, api_visibility="private", queue=False)

        # Undocumented names: scripts/load_test.py downloads as a visitor does. SYNC_JS first makes sure the server
        # still holds the photo and the page's brush strokes (a lost session is rebuilt, the strokes sent again).
        for button, kind in ((dl_rgba, "rgba"), (dl_alpha, "alpha"), (dl_composite, "composite")):
            button.click(handlers.downloader(kind), js=SYNC_JS, inputs=[current, image],
                         inputs_kwargs={**controls, "crop": crop, "crop_margin": crop_margin}, outputs=[dl_file],
                         api_name=f"download_{kind}", api_visibility="undocumented",
                         concurrency_id="encode", concurrency_limit=ENCODE_CONCURRENCY).success(
                None, inputs=[dl_file], js=DOWNLOAD_JS, api_visibility="private")

        # Cancel can be pressed only while a batch runs. Gradio 6.31's page runs a .then() after success only,
        # though its documentation says after either: a batch that could not start (no files, a bad crop margin)
        # left Cancel red and enabled, so the same step also follows a failure.
        batch = batch_run.click(lambda: gr.update(interactive=True, variant="stop"), outputs=[batch_cancel],
                                queue=False, api_visibility="private", show_progress="hidden").then(
            handlers.on_batch, inputs=[batch_files, batch_kinds],
            inputs_kwargs={**controls, "crop": crop, "crop_margin": crop_margin},
            outputs=[batch_table, batch_gallery, batch_zip, batch_status], api_visibility="private",
            concurrency_id="batch", concurrency_limit=BATCH_CONCURRENCY)
        cancel_off = dict(fn=lambda: gr.update(interactive=False, variant="secondary"), outputs=[batch_cancel],
                          queue=False, api_visibility="private", show_progress="hidden")
        batch.then(**cancel_off)
        batch.failure(**cancel_off)
        batch_cancel.click(handlers.on_cancel, outputs=[batch_status], queue=False, api_visibility="private")

        api_matte_button.click(handlers.api_matte, inputs=[api_image, api_threshold, api_feather, api_erode,
                                                           api_refine, api_decontaminate, api_hint],
                               outputs=[api_cutout, api_alpha, api_report], api_name="matte",
                               concurrency_id="network", concurrency_limit=network_concurrency)
        api_batch_button.click(handlers.api_batch, inputs=[api_files, api_include_alpha, api_threshold,
                                                           api_feather, api_erode, api_refine, api_decontaminate],
                               outputs=[api_zip, api_report], api_name="batch", concurrency_id="batch",
                               concurrency_limit=BATCH_CONCURRENCY)

        demo.load(handlers.on_load, outputs=[info, batch_table], api_visibility="private", queue=False)
        demo.unload(handlers.on_unload)

    # After every queued event Gradio's queue rebuilds a pandas summary of up to its last 10,000 events, for the
    # monitoring page this app turns off (launch_options): 1.5 ms with 100 of them, 5.9 ms with 10,000 (2-core AMD
    # EPYC), mostly holding the GIL every request needs. Read when the queue is made; a deployer's value wins.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", str(ANALYTICS_EVENTS))
    demo.queue(max_size=queue_size or QUEUE_MAX_SIZE, default_concurrency_limit=1)
    # Gradio runs the events, their pre- and post-processing and the uploads' file writes on one pool of threads
    # (40 by default): room for every event the limits above let run at once, and as many again for the rest.
    demo.threads_for_launch = max(40, 2 * (network_concurrency + RENDER_CONCURRENCY + ENCODE_CONCURRENCY
                                           + BATCH_CONCURRENCY + 2))
    demo.i18n_for_launch = i18n
    demo.upload_cap = UploadFolderCap(get_upload_folder(), max_bytes=upload_folder_cap(), keep=store.root).start()
    return demo


def launch_options(demo: gr.Blocks, **overrides) -> dict:
    """Keyword arguments for ``demo.launch``: the app's limits, theme and privacy settings, then ``overrides``."""
    options = dict(
        i18n=getattr(demo, "i18n_for_launch", None),
        theme=theme(),
        css=CSS + LIVE_CSS,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[str(EXAMPLES_DIR)],
        ssr_mode=False,
        footer_links=["api", "settings"],
        run_history=False,
        state_session_capacity=STATE_SESSIONS,
        show_error=True,
        favicon_path=None,
        enable_monitoring=False,   # Gradio's default serves its traffic summary at /monitoring/summary to anyone
        max_threads=getattr(demo, "threads_for_launch", 40),
    )
    options.update(overrides)
    return options
