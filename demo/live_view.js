// The live view: one matted photo drawn in the page, redrawn on every edge or background change with no server
// round trip; the server's exact render (refinement, colour decontamination) replaces the page's drawing when a
// slider is let go, or after a short pause in typing.
//
// Runs as the js_on_load of a gr.HTML (demo/live_view.py), which hands it `element`, `props`, `server` and
// `trigger`. The sliders' own events call window.mattingLive.input(settings) and .release(settings) (js-only
// events: no request). The server sends, per photo, at the preview size:
//   photo  PNG of the photo,
//   soft   PNG of the matte before threshold, erode and feather; own: PNG of the upload's own alpha, or null,
//   exact  {settings, alpha: PNG, colour: PNG or null}: the server's alpha for those settings and, with colour
//          decontamination, the soft edge's colour (zero where the photo's own colour shows),
//   bg     JPEG of the background image fitted to the photo, or null.
// The steps below are matting/render.py's shape_edges (threshold, then erode/dilate with the same octagon,
// then a Gaussian feather), radii scaled like the server's preview: change both together.

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
  mode: "result",
  split: 0.5,
  drawScheduled: false,
  idleTimer: null,
  requestSeq: 0,
  loaded: {},           // data URL -> decoded pixels already in use (a repeated payload costs nothing)
  draws: [],            // {t0, t1, exact, settings}: the last redraws, for the browser test and the curious
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

// ---------------------------------------------------------------- edge steps (as matting/render.py shape_edges)
// Images are {d: Float32Array, w, h}, row-major, values in [0, 1].
function threshold(src, level) {
  const d = new Float32Array(src.length);
  if (level > 0) { for (let i = 0; i < d.length; i++) d[i] = src[i] / 255 >= level ? 1 : 0; }
  else { for (let i = 0; i < d.length; i++) d[i] = src[i] / 255; }
  return d;
}

// Valid-mode max/min passes, as ops.erode_dilate: replicate-pad by r, a (2a+1) square, then a diamond of radius
// b from two diagonal lines and 3x3 crosses. Max and min round nothing, so the result equals the server's.
function erodeDilate(img, signedRadius) {
  const dilate = signedRadius > 0;
  const r = Math.min(Math.abs(signedRadius), img.w + img.h);
  const a = Math.max(1, Math.floor(0.39 * r + 0.5));
  const b = r - a;
  let t = padReplicate(img, r);
  t = doubling(t, 2 * a + 1, (u, s) => pairOp(u, 0, 0, s, 0, dilate));      // rows
  t = doubling(t, 2 * a + 1, (u, s) => pairOp(u, 0, 0, 0, s, dilate));      // columns
  if (b > 0) {
    // diamond(2c+1) = diagonal + anti-diagonal lines + a cross; diamond(2c) = diamond(2c-1) + a cross
    const [c, crosses] = b % 2 ? [b >> 1, 1] : [(b >> 1) - 1, 2];
    if (c > 0) {
      t = doubling(t, 2 * c + 1, (u, s) => pairOp(u, 0, 0, s, s, dilate));
      t = doubling(t, 2 * c + 1, (u, s) => pairOp(u, s, 0, 0, s, dilate));
    }
    for (let k = 0; k < crosses; k++) t = cross(t, dilate);
  }
  return t;
}
function padReplicate(img, r) {
  const w = img.w + 2 * r, h = img.h + 2 * r, d = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(img.h - 1, Math.max(0, y - r)) * img.w;
    const row = y * w;
    for (let x = 0; x < w; x++) d[row + x] = img.d[sy + Math.min(img.w - 1, Math.max(0, x - r))];
  }
  return {d, w, h};
}
function doubling(img, k, step) {   // a window of k in ceil(log2 k) passes, as ops._doubling_passes
  let p = 1;
  while (2 * p <= k) { img = step(img, p); p *= 2; }
  return p < k ? step(img, k - p) : img;
}
// out[y][x] = max (or min) of in[y + ay][x + ax] and in[y + by][x + bx]; the output shrinks so both are inside.
function pairOp(img, ax, ay, bx, by, dilate) {
  const w = img.w - Math.max(ax, bx), h = img.h - Math.max(ay, by), W = img.w, src = img.d;
  const d = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const o = y * w, ra = (y + ay) * W + ax, rb = (y + by) * W + bx;
    if (dilate) {
      for (let x = 0; x < w; x++) { const p = src[ra + x], q = src[rb + x]; d[o + x] = p > q ? p : q; }
    } else {
      for (let x = 0; x < w; x++) { const p = src[ra + x], q = src[rb + x]; d[o + x] = p < q ? p : q; }
    }
  }
  return {d, w, h};
}
function cross(img, dilate) {   // the 3x3 plus-shaped neighbourhood, valid mode
  const w = img.w - 2, h = img.h - 2, d = new Float32Array(w * h), s = img.d, W = img.w;
  for (let y = 0; y < h; y++) {
    const o = y * w, c = (y + 1) * W + 1;
    for (let x = 0; x < w; x++) {
      const i = c + x;
      const l = s[i - 1], r = s[i + 1], u = s[i - W], v = s[i + W];
      let m = s[i];
      if (dilate) { if (l > m) m = l; if (r > m) m = r; if (u > m) m = u; if (v > m) m = v; }
      else { if (l < m) m = l; if (r < m) m = r; if (u < m) m = u; if (v < m) m = v; }
      d[o + x] = m;
    }
  }
  return {d, w, h};
}

// Gaussian feather. Small sigma: the exact truncated kernel (radius ceil(3 sigma)) with reflect borders, as the
// server. Larger sigma: three "extended box" passes per axis (boxes with fractional end taps, so the variance is
// exactly sigma^2): constant cost per pixel, well under a level from the Gaussian on a matte.
const EXACT_FEATHER_MAX_SIGMA = 1.5;
function feather(img, sigma) {
  if (sigma <= 0) return img;
  let d = img.d;
  if (sigma <= EXACT_FEATHER_MAX_SIGMA) {
    const k = gaussianKernel(sigma);
    d = convolveRows(d, img.w, img.h, k);
    d = convolveColumns(d, img.w, img.h, k);
  } else {
    for (let pass = 0; pass < 3; pass++) d = extendedBoxRows(d, img.w, img.h, sigma * sigma / 3);
    for (let pass = 0; pass < 3; pass++) d = extendedBoxColumns(d, img.w, img.h, sigma * sigma / 3);
  }
  for (let i = 0; i < d.length; i++) d[i] = d[i] < 0 ? 0 : d[i] > 1 ? 1 : d[i];
  return {d, w: img.w, h: img.h};
}
function reflect(i, n) {   // torch's "reflect" (the edge pixel is not repeated); clamp when the axis is too short
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}
function gaussianKernel(sigma) {
  const r = Math.ceil(3 * sigma), w = [];
  let total = 0;
  for (let j = -r; j <= r; j++) { const v = Math.exp(-(j * j) / (2 * sigma * sigma)); w.push(v); total += v; }
  return w.map((v) => v / total);
}
function convolveRows(src, w, h, k) {
  const r = (k.length - 1) >> 1, out = new Float32Array(src.length), line = new Float32Array(w + 2 * r);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = -r; x < w + r; x++) line[x + r] = src[row + reflect(x, w)];
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let j = 0; j < k.length; j++) acc += k[j] * line[x + j];
      out[row + x] = acc;
    }
  }
  return out;
}
function convolveColumns(src, w, h, k) {
  const r = (k.length - 1) >> 1, out = new Float32Array(src.length);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let j = 0; j < k.length; j++) {
      const from = reflect(y + j - r, h) * w, kj = k[j];
      for (let x = 0; x < w; x++) out[row + x] += kj * src[from + x];
    }
  }
  return out;
}
function extendedBox(variance) {
  // The largest integer radius whose plain box stays within the variance, then end taps of weight alpha.
  let r = Math.floor((Math.sqrt(12 * variance + 1) - 1) / 2);
  while ((r + 1) * (r + 2) / 3 <= variance) r++;
  const alpha = (2 * r + 1) * (variance - r * (r + 1) / 3) / (2 * ((r + 1) * (r + 1) - variance));
  return {r, alpha, norm: 1 / (2 * r + 1 + 2 * alpha)};
}
function extendedBoxRows(src, w, h, variance) {
  const {r, alpha, norm} = extendedBox(variance), p = r + 1;
  const out = new Float32Array(src.length), line = new Float32Array(w + 2 * p);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = -p; x < w + p; x++) line[x + p] = src[row + reflect(x, w)];
    let sum = 0;
    for (let j = 1; j <= 2 * r + 1; j++) sum += line[j];      // window of x = 0: line[1 .. 2r+1]
    for (let x = 0; x < w; x++) {
      out[row + x] = (sum + alpha * (line[x] + line[x + 2 * p])) * norm;
      sum += line[x + 2 * r + 2] - line[x + 1];
    }
  }
  return out;
}
function extendedBoxColumns(src, w, h, variance) {
  const {r, alpha, norm} = extendedBox(variance);
  const out = new Float32Array(src.length), sum = new Float64Array(w);
  const rowAt = (y) => reflect(y, h) * w;
  for (let j = -r; j <= r; j++) { const o = rowAt(j); for (let x = 0; x < w; x++) sum[x] += src[o + x]; }
  for (let y = 0; y < h; y++) {
    const row = y * w, lo = rowAt(y - r - 1), hi = rowAt(y + r + 1), drop = rowAt(y - r);
    for (let x = 0; x < w; x++) {
      out[row + x] = (sum[x] + alpha * (src[lo + x] + src[hi + x])) * norm;
      sum[x] += src[hi + x] - src[drop + x];
    }
  }
  return out;
}

function liveAlpha(s) {
  const im = view.image;
  let img = {d: threshold(im.soft, s.threshold), w: im.w, h: im.h};
  const radius = Math.round(s.erode * im.scale);
  if (radius) img = erodeDilate(img, radius);
  if (s.feather > 0) img = feather(img, s.feather * im.scale);
  return img.d;
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

// The picture for settings `s` in view `mode`: the page's own alpha, or the server's when `exact` is given.
function compose(s, mode, exact) {
  const im = view.image;
  const alphaU8 = exact ? exact.alpha : null;
  const alphaF = exact ? null : liveAlpha(s);
  const own = s.use_input_alpha ? im.own : null;
  const edge = exact && exact.colour ? exact.colour : null;
  const out = new ImageData(im.w, im.h);
  const o = out.data, photo = im.photo, n = im.w * im.h;
  const bgMode = s.bg_mode === "image" && !view.bg ? "transparent" : s.bg_mode;
  const [br, bgc, bb] = parseColour(s.bg_color);
  const bgImg = view.bg;
  const splitX = mode === "compare" ? Math.round(view.split * im.w) : -1;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const colour = edge && alphaU8[i] > 0 && alphaU8[i] < 255 ? edge : photo;
    let a = alphaU8 ? alphaU8[i] / 255 : alphaF[i];
    if (own) a *= own[i] / 255;
    if (splitX >= 0 && i % im.w < splitX) {
      o[j] = photo[j]; o[j + 1] = photo[j + 1]; o[j + 2] = photo[j + 2]; o[j + 3] = 255;
    } else if (mode === "matte") {
      const v = a * 255; o[j] = v; o[j + 1] = v; o[j + 2] = v; o[j + 3] = 255;
    } else if (bgMode === "color") {
      const b = 1 - a;
      o[j] = colour[j] * a + br * b; o[j + 1] = colour[j + 1] * a + bgc * b; o[j + 2] = colour[j + 2] * a + bb * b;
      o[j + 3] = 255;
    } else if (bgMode === "image") {
      const b = 1 - a;
      o[j] = colour[j] * a + bgImg[j] * b; o[j + 1] = colour[j + 1] * a + bgImg[j + 1] * b;
      o[j + 2] = colour[j + 2] * a + bgImg[j + 2] * b; o[j + 3] = 255;
    } else {
      o[j] = colour[j]; o[j + 1] = colour[j + 1]; o[j + 2] = colour[j + 2]; o[j + 3] = a * 255;
    }
  }
  return out;
}

function draw() {
  view.drawScheduled = false;
  const s = view.settings;
  if (!view.image || !s) return;
  const t0 = performance.now();
  const exact = view.exact && view.exact.key === exactKey(s) ? view.exact : null;
  ctx.putImageData(compose(s, view.mode, exact), 0, 0);
  const t1 = performance.now();
  view.draws.push({t0, t1, exact: !!exact, settings: s, mode: view.mode});
  if (view.draws.length > 500) view.draws.splice(0, 250);
}
// The page's own drawing for `settings`, never the server's (the browser test compares the two).
view.liveImage = (settings, mode = "result") => compose(normalise(settings), mode, null);
function scheduleDraw() {
  if (view.drawScheduled) return;
  view.drawScheduled = true;
  setTimeout(draw, 0);   // the newest settings win when changes come faster than drawing
}

// ---------------------------------------------------------------- exact renders from the server
async function requestExact() {
  clearTimeout(view.idleTimer);
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
  if (soft) { im.soft = channel(soft, 0); view.softKey = reply.soft_key; }
  view.exact = {key: exactKey(normalise(reply.exact.settings)), alpha: channel(alpha, 0), colour};
  if (reply.line) view.status.textContent = reply.line;
  scheduleDraw();
}

view.input = (settings) => {
  view.settings = normalise(settings);
  scheduleDraw();
  clearTimeout(view.idleTimer);
  view.idleTimer = setTimeout(requestExact, EXACT_IDLE_MS);
};
view.release = (settings) => {
  view.settings = normalise(settings);
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
