// RegionMed demo page: what is drawn on the image's canvases, and the mapping between the upload's
// coordinates and the model's letterboxed square input. Loaded before demo.js (shared globals).
"use strict";

const COLOURS = ["#ff4d4d", "#3fa9f5", "#7ed957", "#ffb000", "#c77dff", "#00d1c1"];

function clearCanvas(id) { const c = $(id); c.getContext("2d").clearRect(0, 0, c.width, c.height); }

// One axis of a bilinear resize from n cells to N pixels: for each pixel, its two cells and the weight
// of the second. A cell's value sits at its centre and the edges hold their cells' values (as torch's
// interpolate with align_corners=False, and as the model's RoIAlign reads its grid).
function bilinearAxis(n, N) {
  return Array.from({ length: N }, (_, i) => {
    const p = Math.min(n - 1, Math.max(0, ((i + 0.5) * n) / N - 0.5)), lo = Math.floor(p);
    return [lo, Math.min(n - 1, lo + 1), p - lo];
  });
}

function drawHeat() {
  const canvas = $("heat"), c = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  c.clearRect(0, 0, W, H);
  const r = state.ground[state.heat];
  if (!r) return;
  const [gh, gw] = r.grid, flat = r.heatmap.flat();
  const lo = Math.min(...flat), hi = Math.max(...flat), span_ = hi - lo || 1;
  // the cell scores resized bilinearly to the canvas: a smooth map, not gh x gw blocks
  const ys = bilinearAxis(gh, H), xs = bilinearAxis(gw, W), img = c.createImageData(W, H);
  for (let y = 0; y < H; y++) {
    const [y0, y1, fy] = ys[y];
    for (let x = 0; x < W; x++) {
      const [x0, x1, fx] = xs[x];
      const top = flat[y0 * gw + x0] * (1 - fx) + flat[y0 * gw + x1] * fx;
      const bottom = flat[y1 * gw + x0] * (1 - fx) + flat[y1 * gw + x1] * fx;
      const t = (top * (1 - fy) + bottom * fy - lo) / span_;  // blue → yellow → red, opaque: the slider sets the layer's opacity
      img.data.set([Math.round(255 * Math.min(1, 2 * t)), Math.round(255 * (1 - Math.abs(2 * t - 1))), Math.round(255 * Math.max(0, 1 - 2 * t)), 255], 4 * (y * W + x));
    }
  }
  c.putImageData(img, 0, 0);
}

function drawOverlay() {
  const canvas = $("overlay"), c = canvas.getContext("2d"), W = canvas.width;
  c.clearRect(0, 0, W, W);
  state.ground.forEach((r, i) => {
    const [x0, y0, x1, y1] = r.box_model_input;
    c.strokeStyle = COLOURS[i % COLOURS.length]; c.lineWidth = 4; c.setLineDash([]);
    const inset = 5 * i;  // boxes that coincide stay visible, one inside the other
    c.strokeRect(x0 * W + inset, y0 * W + inset, Math.max(1, (x1 - x0) * W - 2 * inset), Math.max(1, (y1 - y0) * W - 2 * inset));
  });
  const box = state.drawing || (state.region && toModel(state.region));
  if (box) {
    c.strokeStyle = "#ffffff"; c.lineWidth = 2; c.setLineDash([8, 6]);
    c.strokeRect(box[0] * W, box[1] * W, (box[2] - box[0]) * W, (box[3] - box[1]) * W);
  }
}

function toModel(b) {  // a box normalised to the upload → normalised to the model's square input
  const f = state.fit;
  if (!f) return b;
  const x = (v) => (v * f.width * f.scale_x + f.pad_x) / f.size, y = (v) => (v * f.height * f.scale_y + f.pad_y) / f.size;
  return [x(b[0]), y(b[1]), x(b[2]), y(b[3])];
}

function toUpload(b) {  // the inverse, clipped to the image
  const f = state.fit, clip = (v) => Math.min(1, Math.max(0, v));
  if (!f) return b.map(clip);
  const x = (v) => clip((v * f.size - f.pad_x) / f.scale_x / f.width), y = (v) => clip((v * f.size - f.pad_y) / f.scale_y / f.height);
  return [x(b[0]), y(b[1]), x(b[2]), y(b[3])];
}

function pointer(ev) {
  const rect = $("overlay").getBoundingClientRect();
  return [(ev.clientX - rect.left) / rect.width, (ev.clientY - rect.top) / rect.height].map((v) => Math.min(1, Math.max(0, v)));
}
