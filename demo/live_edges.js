// The edge settings in the browser: matting/render.py's shape_edges (threshold, then erode/dilate, then feather)
// and the composite, on a screen-sized matte, fast enough to redraw on every step of a slider drag.
// Pure functions over typed arrays; buffers are reused between redraws (a drag redraws tens of times a second).
// Loaded into the page before live_view.js; Node loads it too (scripts/bench_live_edges.mjs).

const EDGE_BUFFERS = {};
function edgeBuffer(name, length, Type) {
  let b = EDGE_BUFFERS[name];
  if (!b || b.length < length || !(b instanceof Type)) b = EDGE_BUFFERS[name] = new Type(length);
  return b;
}

// soft: Uint8Array (w*h) of the matte before the edge settings; own: the upload's alpha or null; hints: the
// brush strokes (0 erase, 255 restore, else the model's: matting/hints.py) or null; s: {threshold, erode,
// feather} with radii already in this image's pixels. Returns Uint8Array alpha (w*h), rounded like the server's.
function shapeEdges(soft, own, w, h, s, hints = null) {
  const n = w * h;
  let a = thresholdInto(soft, edgeBuffer("threshold", n, Uint8Array), n, s.threshold);
  if (s.erode) a = erodeDilate(a, w, h, s.erode);
  if (hints) {   // after erode, before the feather, which softens a stroke's edge like any other
    for (let i = 0; i < n; i++) { const v = hints[i]; if (v === 0) a[i] = 0; else if (v === 255) a[i] = 255; }
  }
  const out = edgeBuffer("alpha", n, Uint8Array).subarray(0, n);
  if (s.feather > 0) {
    const f = feather(a, w, h, s.feather);
    if (own) { for (let i = 0; i < n; i++) out[i] = Math.floor(f[i] * own[i] + 0.5); }
    else { for (let i = 0; i < n; i++) out[i] = Math.floor(f[i] * 255 + 0.5); }
  } else if (own) {
    for (let i = 0; i < n; i++) out[i] = Math.floor(a[i] * own[i] / 255 + 0.5);
  } else {
    out.set(a.subarray(0, n));
  }
  return out;
}

// Binary at the level (alpha >= level), or the matte itself at level 0, through a table of the 256 values.
function thresholdInto(soft, out, n, level) {
  const table = new Uint8Array(256);
  for (let q = 0; q < 256; q++) table[q] = level > 0 ? (q / 255 >= level ? 255 : 0) : q;
  for (let i = 0; i < n; i++) out[i] = table[soft[i]];
  return out;
}

// ops.erode_dilate exactly: replicate-pad by r, a (2a+1) square, then a diamond of radius b from a diagonal and
// an anti-diagonal line and 3x3 crosses. Max and min round nothing, so 8-bit values give the server's result.
// Every pass reads only at or after the pixel it writes (in raster order), so all passes run in one buffer.
function erodeDilate(src, w, h, signedRadius) {
  const dilate = signedRadius > 0;
  const r = Math.min(Math.abs(signedRadius), w + h);
  const a = Math.max(1, Math.floor(0.39 * r + 0.5));
  const b = r - a;
  const W = w + 2 * r, H = h + 2 * r;
  const t = edgeBuffer("erode", W * H, Uint8Array);
  for (let y = 0; y < H; y++) {       // replicate padding
    const from = Math.min(h - 1, Math.max(0, y - r)) * w, row = y * W;
    t.fill(src[from], row, row + r);
    t.set(src.subarray(from, from + w), row + r);
    t.fill(src[from + w - 1], row + r + w, row + W);
  }
  const size = {w: W, h: H};
  const pass = (ax, ay, bx, by) => pairPass(t, W, size, ax, ay, bx, by, dilate);
  doubling(2 * a + 1, (s) => pass(0, 0, s, 0));
  doubling(2 * a + 1, (s) => pass(0, 0, 0, s));
  if (b > 0) {
    // diamond(2c+1) = diagonal + anti-diagonal lines + a cross; diamond(2c) = diamond(2c-1) + a cross
    const [c, crosses] = b % 2 ? [b >> 1, 1] : [(b >> 1) - 1, 2];
    if (c > 0) {
      doubling(2 * c + 1, (s) => pass(0, 0, s, s));
      doubling(2 * c + 1, (s) => pass(s, 0, 0, s));
    }
    for (let k = 0; k < crosses; k++) crossPass(t, W, size, dilate);
  }
  const out = edgeBuffer("eroded", w * h, Uint8Array);
  for (let y = 0; y < h; y++) out.set(t.subarray(y * W, y * W + w), y * w);
  return out;
}
function doubling(k, step) {   // a window of k in ceil(log2 k) passes, as ops._doubling_passes
  let p = 1;
  while (2 * p <= k) { step(p); p *= 2; }
  if (p < k) step(k - p);
}
// t[y][x] = max (or min) of t[y + ay][x + ax] and t[y + by][x + bx]; the valid size shrinks.
function pairPass(t, W, size, ax, ay, bx, by, dilate) {
  const w = size.w - Math.max(ax, bx), h = size.h - Math.max(ay, by);
  for (let y = 0; y < h; y++) {
    const o = y * W, ra = (y + ay) * W + ax, rb = (y + by) * W + bx;
    if (dilate) {
      for (let x = 0; x < w; x++) { const p = t[ra + x], q = t[rb + x]; t[o + x] = p > q ? p : q; }
    } else {
      for (let x = 0; x < w; x++) { const p = t[ra + x], q = t[rb + x]; t[o + x] = p < q ? p : q; }
    }
  }
  size.w = w; size.h = h;
}
function crossPass(t, W, size, dilate) {   // the 3x3 plus-shaped neighbourhood
  const w = size.w - 2, h = size.h - 2;
  for (let y = 0; y < h; y++) {
    const o = y * W;
    for (let x = 0; x < w; x++) {
      const i = o + W + x + 1;
      let m = t[i];
      const l = t[i - 1], r = t[i + 1], u = t[i - W], v = t[i + W];
      if (dilate) { if (l > m) m = l; if (r > m) m = r; if (u > m) m = u; if (v > m) m = v; }
      else { if (l < m) m = l; if (r < m) m = r; if (u < m) m = u; if (v < m) m = v; }
      t[o + x] = m;
    }
  }
  size.w = w; size.h = h;
}

// Gaussian feather of 8-bit values into floats in [0, 1]. Small sigma: the server's truncated kernel (radius
// ceil(3 sigma)) with reflect borders. Larger: three "extended box" passes per axis (boxes with fractional end
// taps, so the variance is exactly sigma^2), constant cost per pixel and within a level of the Gaussian.
const EXACT_FEATHER_MAX_SIGMA = 1.5;
function feather(src, w, h, sigma) {
  const n = w * h;
  const a = edgeBuffer("featherA", n, Float32Array), b = edgeBuffer("featherB", n, Float32Array);
  for (let i = 0; i < n; i++) a[i] = src[i] / 255;
  if (sigma <= EXACT_FEATHER_MAX_SIGMA) {
    const k = gaussianKernel(sigma);
    convolveRows(a, w, h, k);
    convolveColumns(a, b, w, h, k);
    return clamp01(b, n);
  }
  const box = extendedBox(sigma * sigma / 3);
  for (let pass = 0; pass < 3; pass++) boxRows(a, w, h, box);
  boxColumns(a, b, w, h, box);
  boxColumns(b, a, w, h, box);
  boxColumns(a, b, w, h, box);
  return clamp01(b, n);
}
function clamp01(d, n) {
  for (let i = 0; i < n; i++) { const v = d[i]; d[i] = v < 0 ? 0 : v > 1 ? 1 : v; }
  return d;
}
function reflect(i, n) {   // torch's "reflect" (the edge is not repeated); clamped when the axis is too short
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}
function gaussianKernel(sigma) {
  const r = Math.ceil(3 * sigma), k = new Float32Array(2 * r + 1);
  let total = 0;
  for (let j = -r; j <= r; j++) { k[j + r] = Math.exp(-(j * j) / (2 * sigma * sigma)); total += k[j + r]; }
  for (let j = 0; j < k.length; j++) k[j] /= total;
  return k;
}
// Row `row` of d (width w) copied into a reused buffer with `pad` reflected values on each side.
function paddedRow(d, row, w, pad) {
  const line = edgeBuffer("line", w + 2 * pad, Float32Array);
  line.set(d.subarray(row, row + w), pad);
  for (let j = 1; j <= pad; j++) {
    line[pad - j] = d[row + reflect(-j, w)];
    line[pad + w - 1 + j] = d[row + reflect(w - 1 + j, w)];
  }
  return line;
}
function convolveRows(d, w, h, k) {   // in place, through a padded copy of each row
  const r = (k.length - 1) >> 1;
  for (let y = 0; y < h; y++) {
    const row = y * w, line = paddedRow(d, row, w, r);
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let j = 0; j < k.length; j++) acc += k[j] * line[x + j];
      d[row + x] = acc;
    }
  }
}
function convolveColumns(src, out, w, h, k) {
  const r = (k.length - 1) >> 1;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    out.fill(0, row, row + w);
    for (let j = 0; j < k.length; j++) {
      const from = reflect(y + j - r, h) * w, kj = k[j];
      for (let x = 0; x < w; x++) out[row + x] += kj * src[from + x];
    }
  }
}
function extendedBox(variance) {
  // The largest integer radius whose plain box stays within the variance, then end taps of weight alpha.
  let r = Math.max(0, Math.floor((Math.sqrt(12 * variance + 1) - 1) / 2));
  while ((r + 1) * (r + 2) / 3 <= variance) r++;
  while (r > 0 && r * (r + 1) / 3 > variance) r--;
  const alpha = (2 * r + 1) * (variance - r * (r + 1) / 3) / (2 * ((r + 1) * (r + 1) - variance));
  return {r, alpha, norm: 1 / (2 * r + 1 + 2 * alpha)};
}
function boxRows(d, w, h, {r, alpha, norm}) {   // in place, through a padded copy of each row
  const p = r + 1;
  for (let y = 0; y < h; y++) {
    const row = y * w, line = paddedRow(d, row, w, p);
    let sum = 0;
    for (let j = 1; j <= 2 * r + 1; j++) sum += line[j];      // the window of x = 0: line[1 .. 2r+1]
    for (let x = 0; x < w; x++) {
      d[row + x] = (sum + alpha * (line[x] + line[x + 2 * p])) * norm;
      sum += line[x + 2 * r + 2] - line[x + 1];
    }
  }
}
function boxColumns(src, out, w, h, {r, alpha, norm}) {   // running sums per column, rows in order
  const sum = edgeBuffer("columns", w, Float64Array);
  sum.fill(0, 0, w);
  for (let j = -r; j <= r; j++) { const o = reflect(j, h) * w; for (let x = 0; x < w; x++) sum[x] += src[o + x]; }
  for (let y = 0; y < h; y++) {
    const row = y * w, lo = reflect(y - r - 1, h) * w, hi = reflect(y + r + 1, h) * w, drop = reflect(y - r, h) * w;
    for (let x = 0; x < w; x++) {
      out[row + x] = (sum[x] + alpha * (src[lo + x] + src[hi + x])) * norm;
      sum[x] += src[hi + x] - src[drop + x];
    }
  }
}

// The picture: alpha (8-bit, w*h) over the photo's colour (RGBA bytes; where 0 < alpha < 255, `edge`'s when
// given: the server's decontaminated colour) onto a background: null (transparent), [r, g, b], or RGBA bytes.
function composite(out, alpha, photo, edge, background, n) {
  const solid = Array.isArray(background), image = background && !solid;
  const [br, bg, bb] = solid ? background : [0, 0, 0];
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const a = alpha[i];
    const c = edge && a > 0 && a < 255 ? edge : photo;
    if (!background) {
      out[j] = c[j]; out[j + 1] = c[j + 1]; out[j + 2] = c[j + 2]; out[j + 3] = a;
    } else {
      const f = a / 255, g = 1 - f;
      if (image) {
        out[j] = c[j] * f + background[j] * g; out[j + 1] = c[j + 1] * f + background[j + 1] * g;
        out[j + 2] = c[j + 2] * f + background[j + 2] * g;
      } else {
        out[j] = c[j] * f + br * g; out[j + 1] = c[j + 1] * f + bg * g; out[j + 2] = c[j + 2] * f + bb * g;
      }
      out[j + 3] = 255;
    }
  }
}

if (typeof module !== "undefined") module.exports = {shapeEdges, erodeDilate, feather, composite};
