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
  tool: null,           // the brush in hand: "erase", "restore" or null
  strokes: [],          // brush strokes {mode, radius, points} in the preview's pixels, in order
  undone: [],           // strokes taken back by Undo, for Redo
  stroke: null,         // the stroke being painted
  strokesId: 0,         // bumped at every change of the strokes; the server echoes it with its render
  hints: null,          // the strokes drawn into a mask (0 erase, 255 restore, 128 the model's), or null
  mode: "result",
  split: 0.5,
  drawScheduled: false,
  idleTimer: null,
  requestSeq: 0,
  loaded: {},           // data URL -> decoded pixels already in use (a repeated payload costs nothing)
  draws: [],            // {t0, t1, exact, draft, settings, mode}: the last redraws, for tests and the curious
  inputTurned: false,   // the input box shows the stored pixels, its EXIF tag being one the engine ignored
  slotVisible: true,    // the preview's place is on screen or below it (above it, on a phone, the preview floats)
  onLoaded: null,       // called by the next load(): sync() waits there for a rebuilt photo
};
window.mattingLive = view;
const ctx = view.canvas.getContext("2d", {willReadFrequently: true});

// ---------------------------------------------------------------- settings
function exactKey(s, strokesId = view.strokesId) {
  // What the server's exact render depends on; the background is composited in the page.
  return [s.threshold, s.feather, s.erode, s.refine, s.refine_radius, s.use_input_alpha, s.decontaminate,
          strokesId].join("|");
}
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
                own: im.own && halve(im.own, im.w, im.h, 1), photo: halve(im.photo, im.w, im.h, 4), bg: null,
                hints: null, hintsOf: null};
  }
  if (view.bg && !im.draft.bg) im.draft.bg = halve(view.bg, im.w, im.h, 4);
  if (im.draft.hintsOf !== view.hints) {   // labels: every other pixel, not an average
    const d = im.draft, src = view.hints;
    d.hints = src && new Uint8Array(d.w * d.h);
    for (let y = 0; src && y < d.h; y++) {
      for (let x = 0; x < d.w; x++) d.hints[y * d.w + x] = src[2 * y * im.w + 2 * x];
    }
    d.hintsOf = src;
  }
  return im.draft;
}

// The picture for settings `s` in view `mode`, as ImageData: from the server's alpha when `exact` is given,
// else from the page's own redraw of the edges (at half size when `draft`).
function picture(s, mode, exact, draft) {
  const full = view.image, im = draft && !exact ? draftOf(full) : full;
  const bgImage = draft && !exact ? im.bg : view.bg;
  const n = im.w * im.h;
  const hints = draft && !exact ? im.hints : view.hints;
  const alpha = exact ? exact.alpha : shapeEdges(im.soft, s.use_input_alpha ? im.own : null, im.w, im.h, {
    threshold: s.threshold, erode: Math.round(s.erode * im.scale), feather: s.feather * im.scale}, hints);
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
    reply = await view.server.exact_render({...s, image_id: im.id, soft_key: view.softKey, strokes: view.strokes,
                                            strokes_id: view.strokesId});
  } catch (error) {
    view.status.textContent = String(error && error.message || error);
    return;
  }
  if (seq !== view.requestSeq || !view.image || view.image.id !== im.id) return;   // superseded
  if (!reply || reply.stale) { view.trigger("restore"); return; }
  if (reply.error) { view.status.textContent = reply.error; return; }
  await applyReply(reply, im);
}

// Before a download: the server must hold this photo and its strokes. When it lost the session (an idle hour,
// more visitors than it keeps), the photo is rebuilt from the upload and the strokes sent again first; the
// download would otherwise come without the touch-ups the page shows.
view.sync = async () => {
  if (!view.image) return;
  let reply;
  try {
    reply = await view.server.exact_render({image_id: view.image.id, probe: true});
  } catch (error) {
    return;   // the download itself will say what is wrong
  }
  if (!reply || !reply.stale) return;
  const rebuilt = new Promise((resolve) => { view.onLoaded = resolve; setTimeout(resolve, 30000); });
  view.trigger("restore");
  await rebuilt;
  if (view.image) await requestExact();
};
async function applyReply(reply, im) {
  const [alpha, colour, soft] = await Promise.all([
    pixelsOf(reply.exact.alpha), reply.exact.colour ? pixelsOf(reply.exact.colour) : null,
    reply.soft ? pixelsOf(reply.soft) : null]);
  if (!view.image || view.image.id !== im.id) return;
  if (soft) { im.soft = channel(soft, 0); im.draft = null; view.softKey = reply.soft_key; }
  view.exact = {key: exactKey(normalise(reply.exact.settings), reply.exact.strokes_id), alpha: channel(alpha, 0),
                colour};
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
  // The same photo rebuilt on the server (its session was lost): the strokes stay, and are sent again.
  const kept = Boolean(value && value.restored && view.image && value.w === view.image.w &&
                       value.h === view.image.h);
  const loaded = view.onLoaded;
  view.onLoaded = null;
  try {
    await show(value, kept);
  } finally {
    if (loaded) loaded();
  }
}

async function show(value, kept) {
  if (!value || !value.photo) {
    view.image = null; view.exact = null; view.bg = null; view.loaded = {};
    view.strokes = []; view.undone = []; view.stroke = null; view.hints = null;
    updateTools();
    view.frame.classList.add("live-empty");
    view.status.textContent = value && value.line ? value.line : "";
    return;
  }
  const [photo, soft, own, alpha, colour, bg] = await Promise.all([
    pixelsOf(value.photo), pixelsOf(value.soft), value.own ? pixelsOf(value.own) : null, pixelsOf(value.exact.alpha),
    value.exact.colour ? pixelsOf(value.exact.colour) : null, value.bg ? pixelsOf(value.bg) : null]);
  const keep = new Set([value.photo, value.soft, value.own, value.exact.alpha, value.exact.colour, value.bg]);
  for (const url of Object.keys(view.loaded)) if (!keep.has(url)) delete view.loaded[url];
  if (!kept && (!view.image || view.image.id !== value.id)) {   // a new photo: its own strokes, none yet
    view.strokes = []; view.undone = []; view.stroke = null; view.hints = null; view.strokesId = 0;
  }
  view.image = {id: value.id, w: value.w, h: value.h, scale: value.scale, photo,
                soft: channel(soft, 0), own: own ? channel(own, 0) : null};
  view.softKey = value.soft_key;
  view.exact = {key: exactKey(normalise(value.exact.settings), value.exact.strokes_id), alpha: channel(alpha, 0),
                colour};
  view.bg = bg;
  if (!view.settings) view.settings = normalise(value.settings);
  view.canvas.width = value.w;
  view.canvas.height = value.h;
  matchInputOrientation(value.w, value.h);
  placeFloat(view.slotVisible);
  view.frame.classList.remove("live-empty");
  view.status.textContent = value.line || "";
  updateTools();
  draw();
  // Settings moved while the photo was on its way: bring the exact render up to date.
  if (exactKey(view.settings) !== view.exact.key) requestExact();
}
// The input box shows the upload as the browser sees it, turned by its EXIF orientation tag. The engine ignores a
// quarter-turn tag on pixels an editor has already turned (matting/decode.py, _already_rotated), and the box
// would then show the photo on its side next to an upright result: show the stored pixels there instead.
function matchInputOrientation(w, h) {
  const img = document.querySelector("#input-image img");
  if (!img) return;
  const apply = () => {
    img.style.imageOrientation = "";                      // the browser's own reading of the tag first
    const [iw, ih] = [img.naturalWidth, img.naturalHeight];
    const disagree = iw && iw !== ih && w !== h && (ih > iw) !== (h > w);
    img.style.imageOrientation = disagree ? "none" : "";
    view.inputTurned = disagree;
  };
  if (img.complete && img.naturalWidth) apply(); else img.addEventListener("load", apply, {once: true});
}
// On a phone the edge sliders sit a screen or more below the preview: once the preview's place has been scrolled
// past (above the screen), the preview floats in a corner; its place keeps its height, so nothing below it moves.
// Not before it is reached: floating over the input box would hide that box's controls.
const NARROW = window.matchMedia("(max-width: 760px)");
const slot = element.querySelector(".live-slot");
function placeFloat(visible) {
  const float = NARROW.matches && !!view.image && !visible;
  if (float === view.frame.classList.contains("live-float")) return;
  slot.style.minHeight = float ? `${slot.getBoundingClientRect().height}px` : "";
  view.frame.classList.toggle("live-float", float);
}
// A scroll listener rather than an IntersectionObserver: a long jump from below the screen to above it crosses
// no intersection threshold, and the observer would stay silent.
let floatCheck = 0;
function checkFloat() {
  floatCheck = 0;
  const box = slot.getBoundingClientRect();
  view.slotVisible = box.bottom > 0;   // on screen, or still below it
  placeFloat(view.slotVisible);
}
const scheduleFloatCheck = () => { if (!floatCheck) floatCheck = requestAnimationFrame(checkFloat); };
window.addEventListener("scroll", scheduleFloatCheck, {passive: true});
window.addEventListener("resize", scheduleFloatCheck, {passive: true});
NARROW.addEventListener("change", scheduleFloatCheck);
let loading = Promise.resolve();
view.load = (value) => { loading = loading.then(() => load(value)).catch((e) => console.error(e)); return loading; };

// ---------------------------------------------------------------- view switcher and the before/after split
element.querySelectorAll(".live-modes button").forEach((button) => {
  button.addEventListener("click", () => {
    view.mode = button.dataset.mode;
    element.querySelectorAll(".live-modes button").forEach((b) => b.classList.toggle("selected", b === button));
    updateTools();
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

// ---------------------------------------------------------------- brushes: erase and restore
const hintCanvas = new OffscreenCanvas(1, 1);
const hintCtx = hintCanvas.getContext("2d", {willReadFrequently: true});
// The strokes as a mask at the preview's size, drawn as matting/hints.py draws them at the working size:
// round-capped, round-joined lines, later strokes over earlier ones.
function drawHints() {
  const im = view.image, all = view.stroke ? [...view.strokes, view.stroke] : view.strokes;
  if (!im || !all.length) { view.hints = null; return; }
  hintCanvas.width = im.w; hintCanvas.height = im.h;
  hintCtx.lineCap = "round"; hintCtx.lineJoin = "round";
  for (const stroke of all) {
    const colour = stroke.mode === "erase" ? "#000" : "#fff";
    hintCtx.strokeStyle = colour; hintCtx.fillStyle = colour; hintCtx.lineWidth = 2 * stroke.radius;
    hintCtx.beginPath();
    if (stroke.points.length === 1) {
      const [x, y] = stroke.points[0];
      hintCtx.arc(x, y, stroke.radius, 0, 2 * Math.PI); hintCtx.fill();
    } else {
      stroke.points.forEach(([x, y], i) => (i ? hintCtx.lineTo(x, y) : hintCtx.moveTo(x, y)));
      hintCtx.stroke();
    }
  }
  const d = hintCtx.getImageData(0, 0, im.w, im.h).data, hints = new Uint8Array(im.w * im.h);
  for (let i = 0, j = 0; i < hints.length; i++, j += 4) hints[i] = d[j + 3] < 128 ? 128 : d[j] < 128 ? 0 : 255;
  view.hints = hints;
}
function strokesChanged() {
  view.strokesId += 1;
  drawHints();
  updateTools();
  scheduleDraw();
  requestExact();
}
function updateTools() {
  element.querySelectorAll(".live-tools [data-tool]").forEach(
    (b) => b.classList.toggle("selected", b.dataset.tool === view.tool));
  element.querySelector("[data-action=undo]").disabled = !view.strokes.length;
  element.querySelector("[data-action=redo]").disabled = !view.undone.length;
  element.querySelector("[data-action=clear]").disabled = !view.strokes.length && !view.undone.length;
  view.frame.classList.toggle("live-painting", !!view.tool && view.mode !== "compare");
}
function imagePoint(event) {
  const box = view.canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * view.image.w / box.width,
          (event.clientY - box.top) * view.image.h / box.height];
}
const sizeInput = element.querySelector(".live-size input");
function brushRadius() {   // the size control is in screen pixels; strokes keep the image's
  const box = view.canvas.getBoundingClientRect();
  return Math.max(0.5, Number(sizeInput.value) / 2 * view.image.w / Math.max(1, box.width));
}
element.querySelectorAll(".live-tools [data-tool]").forEach((button) => {
  button.addEventListener("click", () => {
    view.tool = view.tool === button.dataset.tool ? null : button.dataset.tool;
    updateTools();
  });
});
view.undo = () => { if (view.strokes.length) { view.undone.push(view.strokes.pop()); strokesChanged(); } };
view.redo = () => { if (view.undone.length) { view.strokes.push(view.undone.pop()); strokesChanged(); } };
view.clearStrokes = () => { view.strokes = []; view.undone = []; strokesChanged(); };
element.querySelector("[data-action=undo]").addEventListener("click", view.undo);
element.querySelector("[data-action=redo]").addEventListener("click", view.redo);
element.querySelector("[data-action=clear]").addEventListener("click", view.clearStrokes);
view.canvas.addEventListener("pointerdown", (event) => {
  if (!view.tool || !view.image || view.mode === "compare") return;
  view.canvas.setPointerCapture(event.pointerId);
  view.stroke = {mode: view.tool, radius: brushRadius(), points: [imagePoint(event)]};
  view.moving = true;
  drawHints();
  scheduleDraw();
});
view.canvas.addEventListener("pointermove", (event) => {
  if (!view.stroke) return;
  const [x, y] = imagePoint(event), last = view.stroke.points.at(-1);
  if (Math.hypot(x - last[0], y - last[1]) < 1) return;
  view.stroke.points.push([x, y]);
  drawHints();
  scheduleDraw();
});
function endStroke() {
  if (!view.stroke) return;
  view.strokes.push(view.stroke);
  view.stroke = null;
  view.undone = [];
  view.moving = false;
  strokesChanged();
}
view.canvas.addEventListener("pointerup", endStroke);
view.canvas.addEventListener("pointercancel", endStroke);
updateTools();

watch("value", () => view.load(props.value));
view.load(props.value);
