"""The single-image result as a canvas the page redraws itself (live_view.js, live_edges.js), and its hooks.

The sliders' events run JavaScript only (no request) and hand the page the control values: during a drag the
page redraws threshold, erode/dilate, feather and the background from the matte it holds; on release (or a
pause in typing) it asks the server's ``exact_render`` for the exact preview, outside Gradio's queue.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import gradio as gr

from .handlers import LIVE_THREADS
from .i18n import EN, RUNTIME_ZH, ZH

# The edge steps (live_edges.js) first, then the view that uses them (live_view.js).
LIVE_JS = "\n".join(Path(__file__).with_name(name).read_text(encoding="utf-8")
                     for name in ("live_edges.js", "live_view.js"))

# The controls whose values the page needs, in this order (ui.py passes them as the hooks' inputs).
SETTING_NAMES = ("threshold", "feather", "erode", "refine", "refine_radius", "use_input_alpha", "decontaminate",
                 "bg_mode", "bg_color")

# Static markup: the template never refers to the value, so a new value never rebuilds the canvas.
TEMPLATE = """
<div class="live-view">
  <div class="live-bar">
    <div class="live-modes" role="tablist">
      <button type="button" data-mode="result" class="selected"></button>
      <button type="button" data-mode="matte"></button>
      <button type="button" data-mode="compare"></button>
    </div>
    <div class="live-tools">
      <button type="button" data-tool="erase"></button>
      <button type="button" data-tool="restore"></button>
      <label class="live-size"><span></span> <input type="range" min="2" max="100" value="20"></label>
      <button type="button" data-action="undo" disabled></button>
      <button type="button" data-action="redo" disabled></button>
      <button type="button" data-action="clear" disabled></button>
    </div>
  </div>
  <div class="live-slot">
    <div class="live-frame live-empty checker">
      <canvas class="live-canvas" width="1" height="1"></canvas>
      <div class="live-placeholder"></div>
    </div>
  </div>
  <div class="live-status" id="timings"></div>
</div>
"""

CSS = """
#live-view .live-bar { display: flex; flex-wrap: wrap; gap: 6px 14px; margin-bottom: 6px; align-items: center; }
#live-view .live-modes, #live-view .live-tools { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
#live-view .live-bar button { padding: 2px 10px; border-radius: 6px; border: 1px solid var(--border-color-primary);
  background: var(--background-fill-secondary); color: var(--body-text-color); font-size: 0.9em; cursor: pointer; }
#live-view .live-bar button.selected { background: var(--color-accent-soft); border-color: var(--color-accent); }
#live-view .live-bar button:disabled { opacity: 0.45; cursor: default; }
#live-view .live-size { display: flex; align-items: center; gap: 4px; font-size: 0.85em; }
#live-view .live-size input { width: 90px; }
#live-view .live-painting canvas.live-canvas { cursor: crosshair; }
#live-view .live-frame { display: flex; align-items: center; justify-content: center; min-height: 120px;
  border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 4px; background: transparent; }
#live-view canvas.live-canvas { display: block; max-width: 100%; max-height: 60vh; width: auto; height: auto;
  touch-action: none; }
#live-view .live-empty canvas.live-canvas { display: none; }
#live-view .live-placeholder { display: none; opacity: 0.6; font-size: 0.9em; padding: 24px; text-align: center; }
#live-view .live-empty .live-placeholder { display: block; }
#live-view .live-status { font-size: 0.85em; opacity: 0.85; margin-top: 4px; min-height: 1.2em; }
/* Phones: the sliders sit a screen below the preview; while it is out of sight it floats in a corner. */
#live-view .live-frame.live-float { position: fixed; top: 8px; right: 8px; width: 46vw; min-height: 0; z-index: 50;
  background-color: var(--background-fill-primary); box-shadow: 0 2px 12px rgba(0, 0, 0, 0.35); }
#live-view .live-float canvas.live-canvas { max-height: 32vh; }
"""


TOAST_TITLES_JS = """
if (LANG === 'zh' && !window.mattingToastTitles) {
  window.mattingToastTitles = true;
  const retitle = () => document.querySelectorAll('.toast-title').forEach((title) => {
    title.childNodes.forEach((node) => {
      const word = node.nodeType === Node.TEXT_NODE ? node.textContent.trim() : '';
      if (LABELS.zh_toasts[word]) node.textContent = LABELS.zh_toasts[word] + ' ';
    });
  });
  new MutationObserver(retitle).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


def _labels(lang: str) -> str:
    """The view's few words in both languages; the page picks by --lang or, in auto mode, by the browser."""
    keys = ("view_result", "view_matte", "view_compare", "live_empty", "brush_erase", "brush_restore", "brush_size",
            "brush_undo", "brush_redo", "brush_clear", "brush_hint")
    table = {"en": {k: EN[k] for k in keys}, "zh": {k: ZH[k] for k in keys}}
    # Gradio 6 titles its toasts from their kind, in English, whatever title the server gives: the page swaps
    # these words for Chinese ones.
    toasts = {"Info": RUNTIME_ZH["toast_info"], "Warning": RUNTIME_ZH["toast_warning"],
              "Error": RUNTIME_ZH["toast_error"]}
    return json.dumps({"lang": lang, "texts": table, "zh_toasts": toasts}, ensure_ascii=False)


def release_function(handlers, threads: int | None = None):
    """The page's ``exact_render`` server function: ``handlers.exact_render`` on threads of its own, at most
    ``threads`` (default: two per live render slot, demo/handlers.LIVE_THREADS) and the rest waiting in the event
    loop. A sync server function would run on the threads Gradio shares between the queue's events, their pre-
    and post-processing and the file uploads' writes, and a burst of releases waiting for the GPU's turn could take
    them all. (Under 64 users on the H200 this did not change the uploads' file POST or queue wait, whose tails
    have another cause: docs/RELIABILITY.md, session 19.)

    Gradio marks server functions with an attribute, which a bound method cannot take, hence a function; the
    annotation makes Gradio hand over the request (its Accept-Language picks the language of the timing line)."""
    limiter: list[anyio.CapacityLimiter] = []   # made in the server's event loop, on the first release

    async def exact_render(data, request: gr.Request = None):
        if not limiter:
            limiter.append(anyio.CapacityLimiter(threads or LIVE_THREADS))
        return await anyio.to_thread.run_sync(handlers.exact_render, data, request, limiter=limiter[0])
    return exact_render


def live_view(handlers, *, lang: str = "auto") -> gr.HTML:
    """The gr.HTML that draws the current image; its value is the payload of ``Handlers._live_value``."""

    exact_render = release_function(handlers)
    labels = (f"const LABELS = {_labels(lang)};\n"
              "const LANG = LABELS.lang !== 'auto' ? LABELS.lang\n"
              "  : ((navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en');\n"
              "const WORDS = LABELS.texts[LANG];\n"
              "element.querySelector('[data-mode=result]').textContent = WORDS.view_result;\n"
              "element.querySelector('[data-mode=matte]').textContent = WORDS.view_matte;\n"
              "element.querySelector('[data-mode=compare]').textContent = WORDS.view_compare;\n"
              "element.querySelector('.live-placeholder').textContent = WORDS.live_empty;\n"
              "element.querySelector('[data-tool=erase]').textContent = WORDS.brush_erase;\n"
              "element.querySelector('[data-tool=restore]').textContent = WORDS.brush_restore;\n"
              "element.querySelector('.live-size span').textContent = WORDS.brush_size;\n"
              "element.querySelector('[data-action=undo]').textContent = WORDS.brush_undo;\n"
              "element.querySelector('[data-action=redo]').textContent = WORDS.brush_redo;\n"
              "element.querySelector('[data-action=clear]').textContent = WORDS.brush_clear;\n"
              "element.querySelector('.live-tools').title = WORDS.brush_hint;\n"
              + TOAST_TITLES_JS)
    return gr.HTML(None, html_template=TEMPLATE, js_on_load=labels + LIVE_JS, elem_id="live-view",
                   apply_default_css=False, server_functions=[exact_render])


def _hook(method: str) -> str:
    args = ", ".join(SETTING_NAMES)
    return f"({args}) => {{ if (window.mattingLive) window.mattingLive.{method}({{{args}}}); }}"


# While a control moves: redraw in the page. When it is let go: redraw, then the server's exact preview.
INPUT_JS = _hook("input")
RELEASE_JS = _hook("release")
