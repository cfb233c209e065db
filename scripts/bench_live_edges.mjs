// How long the page's redraw takes (demo/live_edges.js), in Node's V8 (the engine of Chromium), on a synthetic
// screen-sized matte: a soft disc with a noisy rim. Prints a table of medians.
//   node scripts/bench_live_edges.mjs [WIDTH HEIGHT]     (default 1024 683, a 3:2 photo's preview)
import {createRequire} from "node:module";

const require = createRequire(import.meta.url);
const {shapeEdges, composite} = require("../demo/live_edges.js");

const w = Number(process.argv[2] || 1024), h = Number(process.argv[3] || 683), n = w * h;
const soft = new Uint8Array(n), photo = new Uint8ClampedArray(4 * n), out = new Uint8ClampedArray(4 * n);
let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
for (let y = 0; y < h; y++) {
  for (let x = 0; x < w; x++) {
    const d = Math.hypot(x - w / 2, y - h / 2) / (0.35 * Math.min(w, h));
    soft[y * w + x] = Math.max(0, Math.min(255, Math.round(255 * (1.5 - d) + 40 * (random() - 0.5))));
    photo.set([x % 256, y % 256, 128, 255], 4 * (y * w + x));
  }
}
const cases = {
  "no edge setting": {threshold: 0, erode: 0, feather: 0},
  "feather 1 px": {threshold: 0, erode: 0, feather: 1},
  "feather 4 px": {threshold: 0, erode: 0, feather: 4},
  "feather 15 px": {threshold: 0, erode: 0, feather: 15},
  "erode -3 px": {threshold: 0, erode: -3, feather: 0},
  "dilate 15 px": {threshold: 0, erode: 15, feather: 0},
  "threshold, erode -5, feather 3": {threshold: 0.5, erode: -5, feather: 3},
};
const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
console.log(`redraw of a ${w} x ${h} matte, node ${process.version}, median of 15 (ms)`);
console.log("| settings | edges | + composite on a colour |\n| --- | ---: | ---: |");
for (const [name, s] of Object.entries(cases)) {
  const edges = [], total = [];
  for (let k = 0; k < 17; k++) {
    const t0 = performance.now();
    const alpha = shapeEdges(soft, null, w, h, s);
    const t1 = performance.now();
    composite(out, alpha, photo, null, [255, 255, 255], n);
    const t2 = performance.now();
    if (k >= 2) { edges.push(t1 - t0); total.push(t2 - t0); }
  }
  console.log(`| ${name} | ${median(edges).toFixed(1)} | ${median(total).toFixed(1)} |`);
}
