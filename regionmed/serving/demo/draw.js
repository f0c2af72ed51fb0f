// RegionMed demo page: what is drawn on the image's canvases, and the mapping between the upload's
// coordinates and the model's letterboxed square input. Loaded before demo.js (shared globals).
"use strict";

const COLOURS = ["#ff4d4d", "#3fa9f5", "#7ed957", "#ffb000", "#c77dff", "#00d1c1"];

function clearCanvas(id) { const c = $(id); c.getContext("2d").clearRect(0, 0, c.width, c.height); }

function drawHeat() {
  const canvas = $("heat"), c = canvas.getContext("2d");
  c.clearRect(0, 0, canvas.width, canvas.height);
  const r = state.ground[state.heat];
  if (!r) return;
  const [gh, gw] = r.grid, flat = r.heatmap.flat();
  const lo = Math.min(...flat), hi = Math.max(...flat), span_ = hi - lo || 1;
  const small = document.createElement("canvas"); small.width = gw; small.height = gh;
  const sc = small.getContext("2d"), img = sc.createImageData(gw, gh);
  flat.forEach((v, i) => {
    const t = (v - lo) / span_;  // blue → yellow → red, opaque: the slider sets the layer's opacity
    img.data.set([Math.round(255 * Math.min(1, 2 * t)), Math.round(255 * (1 - Math.abs(2 * t - 1))), Math.round(255 * Math.max(0, 1 - 2 * t)), 255], 4 * i);
  });
  sc.putImageData(img, 0, 0);
  c.imageSmoothingEnabled = false;
  c.drawImage(small, 0, 0, canvas.width, canvas.height);
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
