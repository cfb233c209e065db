// The live view: one matted photo drawn in the page, redrawn on every edge or background change with no server
// round trip; the server's exact render (refinement, colour decontamination) replaces the page's drawing when a
// slider is let go, or after a short pause in typing.
//
// Runs as the js_on_load of a gr.HTML (demo/live_view.py), which hands it `element`, `props`, `server` and
// `trigger`. The sliders' own events call window.mattingLive.input(settings) and .release(settings) (js-only
// events: no request). The server sends, per photo, at the preview size:
//   photo  JPEG of the photo (quality 95, full colour resolution),
//   soft   PNG of the matte before threshold, erode and feather; own: PNG of the upload's own alpha, or null,
//   exact  {settings, alpha: PNG, colour: JPEG or null}: the server's alpha for those settings and, with colour
//          decontamination, the decontaminated colour, which the page uses only where 0 < alpha < 1,
//   bg     JPEG of the background image fitted to the photo, or null.
// The edge steps themselves (shapeEdges, composite) are in live_edges.js, loaded before this file.

const EXACT_IDLE_MS = 350;     // after the last change without a release (keys, number box), ask the server
const view = {
  element, props, server, trigger,
  canvas: element.querySelector("canvas.live-canvas"),
  status: element.querySelector(".live-status"),
  frame: element.querySelector(".live-frame"),
  image: null,          // {id, w, h, scale, photo: Uint8ClampedArray RGBA, soft: Uint8Array, own: Uint8Array|null}
  softKey: null,        // refine settings the soft matte was made with
  exact: null,          // {key, alpha: Uint8Array, colour: Uint8ClampedArray RGBA | null}
  bg: null,             // Uint8ClampedArray RGBA at the photo's size
  settings: null,
  moving: false,        // a control is moving: large images are drafted at half size until it stops
  mode: "result",
  split: 0.5,
  drawScheduled: false,
  idleTimer: null,
  requestSeq: 0,
  loaded: {},           // data URL -> decoded pixels already in use (a repeated payload costs nothing)
  draws: [],            // {t0, t1, exact, draft, settings, mode}: the last redraws, for tests and the curious
};
window.mattingLive = view;
const ctx = view.canvas.getContext("2d", {willReadFrequently: true});

// ---------------------------------------------------------------- settings
function exactKey(s) {
  // What the server's exact render depends on; the background is composited in the page.
  return [s.threshold, s.feather, s.erode, s.refine, s.refine_radius, s.use_input_alpha, s.decontaminate].join("|");
}
function softKeyOf(s) { return s.refine ? `refine|${s.refine_radius}` : "plain"; }
function normalise(s) {
  return {
    threshold: Number(s.threshold) || 0, feather: Number(s.feather) || 0, erode: Math.round(Number(s.erode) || 0),
    refine: !!s.refine, refine_radius: Math.round(Number(s.refine_radius) || 8),
    use_input_alpha: !!s.use_input_alpha, decontaminate: !!s.decontaminate,
    bg_mode: s.bg_mode || "transparent", bg_color: s.bg_color || "#ffffff",
  };
}

// ---------------------------------------------------------------- decoding
async function pixelsOf(dataUrl) {
  if (view.loaded[dataUrl]) return view.loaded[dataUrl];
  const blob = await (await fetch(dataUrl)).blob();
  const bitmap = await createImageBitmap(blob, {premultiplyAlpha: "none", colorSpaceConversion: "none"});
  const c = new OffscreenCanvas(bitmap.width, bitmap.height);
  const g = c.getContext("2d", {willReadFrequently: true});
  g.drawImage(bitmap, 0, 0);
  const pixels = g.getImageData(0, 0, bitmap.width, bitmap.height).data;
  bitmap.close();
  view.loaded[dataUrl] = pixels;
  return pixels;
}
function channel(rgba, k) {
  const out = new Uint8Array(rgba.length >> 2);
  for (let i = 0, j = k; i < out.length; i++, j += 4) out[i] = rgba[j];
  return out;
}

// ---------------------------------------------------------------- drawing
function parseColour(text) {
  const m = /^#?([0-9a-f]{6}|[0-9a-f]{3})$/i.exec((text || "").trim());
  if (!m) {
    const parts = (text || "").replace(/rgba?\(|\)/g, "").split(",").map(Number);
    return parts.length >= 3 && parts.every((v) => v >= 0 && v <= 255) ? parts.slice(0, 3) : [255, 255, 255];
  }
  const hex = m[1].length === 3 ? m[1].split("").map((c) => c + c).join("") : m[1];
  return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// A quarter of the pixels (every 2 x 2 block averaged) for drafts while a control is moving on a large image.
const DRAFT_ABOVE_PIXELS = 300000;
function halve(src, w, h, channels) {
  const w2 = w >> 1, h2 = h >> 1, out = new (src.constructor)(w2 * h2 * channels);
  for (let y = 0; y < h2; y++) {
    for (let x = 0; x < w2; x++) {
      const i = ((2 * y) * w + 2 * x) * channels, j = i + w * channels, o = (y * w2 + x) * channels;
      for (let c = 0; c < channels; c++) {
        out[o + c] = (src[i + c] + src[i + channels + c] + src[j + c] + src[j + channels + c] + 2) >> 2;
      }
    }
  }
  return out;
}
function draftOf(im) {
  if (!im.draft) {
    const w = im.w >> 1, h = im.h >> 1;
    im.draft = {w, h, scale: im.scale * (w / im.w), soft: halve(im.soft, im.w, im.h, 1),
                own: im.own && halve(im.own, im.w, im.h, 1), photo: halve(im.photo, im.w, im.h, 4), bg: null};
  }
  if (view.bg && !im.draft.bg) im.draft.bg = halve(view.bg, im.w, im.h, 4);
  return im.draft;
}

// The picture for settings `s` in view `mode`, as ImageData: from the server's alpha when `exact` is given,
// else from the page's own redraw of the edges (at half size when `draft`).
function picture(s, mode, exact, draft) {
  const full = view.image, im = draft && !exact ? draftOf(full) : full;
  const bgImage = draft && !exact ? im.bg : view.bg;
  const n = im.w * im.h;
  const alpha = exact ? exact.alpha : shapeEdges(im.soft, s.use_input_alpha ? im.own : null, im.w, im.h, {
    threshold: s.threshold, erode: Math.round(s.erode * im.scale), feather: s.feather * im.scale});
  const out = new ImageData(im.w, im.h), o = out.data;
  if (mode === "matte") {
    for (let i = 0, j = 0; i < n; i++, j += 4) { o[j] = o[j + 1] = o[j + 2] = alpha[i]; o[j + 3] = 255; }
    return out;
  }
  const background = s.bg_mode === "color" ? parseColour(s.bg_color)
    : s.bg_mode === "image" && bgImage ? bgImage : null;
  composite(o, alpha, im.photo, exact && exact.colour, background, n);
  if (mode === "compare") {   // the photo on the left of the split
    const split = Math.round(view.split * im.w);
    for (let y = 0; y < im.h; y++) o.set(im.photo.subarray(4 * y * im.w, 4 * (y * im.w + split)), 4 * y * im.w);
  }
  return out;
}

const draftCanvas = new OffscreenCanvas(1, 1);
const draftCtx = draftCanvas.getContext("2d");
function draw() {
  view.drawScheduled = false;
  const s = view.settings, im = view.image;
  if (!im || !s) return;
  const t0 = performance.now();
  const exact = view.exact && view.exact.key === exactKey(s) ? view.exact : null;
  const draft = !exact && view.moving && im.w * im.h > DRAFT_ABOVE_PIXELS;
  const image = picture(s, view.mode, exact, draft);
  if (draft) {   // drawn at half size, shown scaled up until the exact render comes
    draftCanvas.width = image.width; draftCanvas.height = image.height;
    draftCtx.putImageData(image, 0, 0);
    ctx.clearRect(0, 0, im.w, im.h);
    ctx.drawImage(draftCanvas, 0, 0, im.w, im.h);
  } else {
    ctx.putImageData(image, 0, 0);
  }
  const t1 = performance.now();
  view.draws.push({t0, t1, exact: !!exact, draft, settings: s, mode: view.mode});
  if (view.draws.length > 500) view.draws.splice(0, 250);
}
// The page's own full-size drawing for `settings`, never the server's (the browser test compares the two).
view.liveImage = (settings, mode = "result") => picture(normalise(settings), mode, null, false);

function scheduleDraw() {
  if (view.drawScheduled) return;
  view.drawScheduled = true;
  setTimeout(draw, 0);   // the newest settings win when changes come faster than drawing
}

// ---------------------------------------------------------------- exact renders from the server
async function requestExact() {
  clearTimeout(view.idleTimer);
  view.moving = false;
  const s = view.settings, im = view.image;
  if (!im || !s) return;
  if (view.exact && view.exact.key === exactKey(s)) { scheduleDraw(); return; }
  const seq = ++view.requestSeq;
  let reply;
  try {
    reply = await view.server.exact_render({...s, image_id: im.id, soft_key: view.softKey});
  } catch (error) {
    view.status.textContent = String(error && error.message || error);
    return;
  }
  if (seq !== view.requestSeq || !view.image || view.image.id !== im.id) return;   // superseded
  if (!reply || reply.stale) { view.trigger("restore"); return; }
  if (reply.error) { view.status.textContent = reply.error; return; }
  await applyReply(reply, im);
}
async function applyReply(reply, im) {
  const [alpha, colour, soft] = await Promise.all([
    pixelsOf(reply.exact.alpha), reply.exact.colour ? pixelsOf(reply.exact.colour) : null,
    reply.soft ? pixelsOf(reply.soft) : null]);
  if (!view.image || view.image.id !== im.id) return;
  if (soft) { im.soft = channel(soft, 0); im.draft = null; view.softKey = reply.soft_key; }
  view.exact = {key: exactKey(normalise(reply.exact.settings)), alpha: channel(alpha, 0), colour};
  if (reply.line) view.status.textContent = reply.line;
  scheduleDraw();
}

view.input = (settings) => {
  view.settings = normalise(settings);
  view.moving = true;
  scheduleDraw();
  clearTimeout(view.idleTimer);
  view.idleTimer = setTimeout(requestExact, EXACT_IDLE_MS);
};
view.release = (settings) => {
  view.settings = normalise(settings);
  view.moving = false;
  scheduleDraw();
  requestExact();
};

// ---------------------------------------------------------------- a new photo (or background) from the server
async function load(value) {
  if (!value || !value.photo) {
    view.image = null; view.exact = null; view.bg = null; view.loaded = {};
    view.frame.classList.add("live-empty");
    view.status.textContent = value && value.line ? value.line : "";
    return;
  }
  const [photo, soft, own, alpha, colour, bg] = await Promise.all([
    pixelsOf(value.photo), pixelsOf(value.soft), value.own ? pixelsOf(value.own) : null, pixelsOf(value.exact.alpha),
    value.exact.colour ? pixelsOf(value.exact.colour) : null, value.bg ? pixelsOf(value.bg) : null]);
  const keep = new Set([value.photo, value.soft, value.own, value.exact.alpha, value.exact.colour, value.bg]);
  for (const url of Object.keys(view.loaded)) if (!keep.has(url)) delete view.loaded[url];
  view.image = {id: value.id, w: value.w, h: value.h, scale: value.scale, photo,
                soft: channel(soft, 0), own: own ? channel(own, 0) : null};
  view.softKey = value.soft_key;
  view.exact = {key: exactKey(normalise(value.exact.settings)), alpha: channel(alpha, 0), colour};
  view.bg = bg;
  if (!view.settings) view.settings = normalise(value.settings);
  view.canvas.width = value.w;
  view.canvas.height = value.h;
  view.frame.classList.remove("live-empty");
  view.status.textContent = value.line || "";
  draw();
  // Settings moved while the photo was on its way: bring the exact render up to date.
  if (exactKey(view.settings) !== view.exact.key) requestExact();
}
let loading = Promise.resolve();
view.load = (value) => { loading = loading.then(() => load(value)).catch((e) => console.error(e)); return loading; };

// ---------------------------------------------------------------- view switcher and the before/after split
element.querySelectorAll(".live-modes button").forEach((button) => {
  button.addEventListener("click", () => {
    view.mode = button.dataset.mode;
    element.querySelectorAll(".live-modes button").forEach((b) => b.classList.toggle("selected", b === button));
    scheduleDraw();
  });
});
function splitAt(event) {
  const box = view.canvas.getBoundingClientRect();
  view.split = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  scheduleDraw();
}
view.canvas.addEventListener("pointerdown", (event) => {
  if (view.mode !== "compare") return;
  view.canvas.setPointerCapture(event.pointerId);
  splitAt(event);
});
view.canvas.addEventListener("pointermove", (event) => {
  if (view.mode === "compare" && view.canvas.hasPointerCapture(event.pointerId)) splitAt(event);
});

watch("value", () => view.load(props.value));
view.load(props.value);
