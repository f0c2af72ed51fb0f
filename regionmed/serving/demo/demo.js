// RegionMed demo page: calls the service's own APIs (same origin), keeps nothing but the current
// upload and the API key in memory. No framework, no build step, nothing from another host.
// draw.js (loaded first) has the canvases and the box coordinates.
"use strict";

const ROOT = new URL("..", document.baseURI);  // the page is at <service>/ui/, the APIs at <service>/
const HEADLINE = ["zeroshot/macro_auroc", "retrieval/i2t_R@5", "grounding/full/lenient", "hardneg/accuracy"];
const state = { key: null, file: null, fit: null, size: 0, ground: [], heat: 0, region: null, drawing: null };
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(name, body) {
  const headers = {};
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  let payload = body;
  if (!(body instanceof FormData)) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body || {}); }
  let res;
  try {
    res = await fetch(new URL(name, ROOT), { method: "POST", headers, body: payload });
  } catch (err) {
    throw new ApiError(0, `the service did not answer (${err.message})`);
  }
  const text = await res.text();
  let doc = null;
  try { doc = JSON.parse(text); } catch (_) { /* not JSON: reported below */ }
  if (!res.ok) {
    const message = (doc && doc.error) || `${res.status} ${res.statusText}`;
    if (res.status === 401) askForKey(message);
    throw new ApiError(res.status, message);
  }
  return doc;
}

function showMessage(text) { const m = $("message"); m.textContent = text; m.hidden = false; }
function clearMessage() { const m = $("message"); m.textContent = ""; m.hidden = true; }
function report(err) { showMessage(err instanceof ApiError ? err.message : `error in the page: ${err.message}`); }

function askForKey(reason) {
  $("key-panel").hidden = false;
  $("key-reason").textContent = state.key
    ? `The service refused this key (${reason}). Enter the right one; it stays in this page's memory only.`
    : "This service needs an API key. It is kept in this page's memory only.";
  $("api-key").focus();
}

// ---- the status corner ------------------------------------------------------------------------
async function loadMetadata() {
  const meta = await api("metadata", {});
  $("key-panel").hidden = true;
  const m = meta.model, gate = meta.gate || {};
  const gateText = gate.passed === undefined ? "gate: unknown" : gate.forced ? "gate: FORCED" : gate.passed ? "gate: passed" : "gate: failed";
  $("model-line").innerHTML = "";
  $("model-line").append(`model ${m.version} (${m.origin}) · `, span(gateText, gate.passed && !gate.forced ? "ok" : "warn"));
  const dl = $("model-metrics"); dl.innerHTML = "";
  const metrics = meta.metrics || {};
  const keys = HEADLINE.filter((k) => k in metrics);
  for (const k of keys.length ? keys : Object.keys(metrics).slice(0, 4)) {
    dl.append(el("dt", k), el("dd", Number(metrics[k]).toFixed(3)));
  }
  const d = meta.drift;
  $("drift-line").innerHTML = "";
  if (!d) $("drift-line").append("drift: no monitor run found");
  else $("drift-line").append("drift: ", span(d.drift ? "DRIFT" : d.status, d.drift ? "warn" : "ok"),
    ` (last run ${d.written_at || "?"})`);
  if (d && d.message) $("drift-line").title = d.message;
  fillVocabulary(meta.labels || []);
  return meta;
}

function fillVocabulary(labels) {
  const sel = $("vocab"); sel.innerHTML = "";
  for (const l of labels) sel.append(new Option(l, l));
  $("vocab-add").disabled = labels.length === 0;
  if (!$("labels").value.trim()) {
    const start = labels.slice(0, 6);
    if (!start.includes("no finding")) start.push("no finding");
    $("labels").value = (labels.length ? start : ["pleural effusion", "nodule", "no finding"]).join("\n");
  }
}

// ---- upload and preview -----------------------------------------------------------------------
function formWith(fields) {
  const fd = new FormData();
  fd.append("image", state.file, state.file.name || "upload");
  for (const [k, v] of Object.entries(fields || {})) fd.append(k, typeof v === "string" ? v : JSON.stringify(v));
  return fd;
}

async function useFile(file) {
  if (!file) return;
  clearMessage();
  state.file = file; state.ground = []; state.region = null; state.fit = null;
  $("file-name").textContent = `${file.name} (${file.size} bytes)`;
  for (const id of ["zs-bars", "ground-results", "region-results"]) $(id).innerHTML = "";
  $("retrieve-results").tBodies[0].innerHTML = "";
  clearCanvas("view"); clearCanvas("heat"); clearCanvas("overlay");
  try {
    const p = await api("preview", formWith());
    state.fit = p.fit; state.size = p.size;
    await drawPreview(p.image);
    $("stage-caption").textContent = `${p.format.toUpperCase()} ${p.width}×${p.height} → the model's ${p.size}×${p.size} input`;
  } catch (err) { report(err); return; }
  await runAll([zeroShot, ground, retrieve]);
}

async function runAll(steps) {
  for (const step of steps) { try { await step(); } catch (err) { report(err); return; } }
}

function drawPreview(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const c = $("view").getContext("2d");
      c.imageSmoothingEnabled = true;
      c.drawImage(img, 0, 0, c.canvas.width, c.canvas.height);
      resolve();
    };
    img.onerror = () => reject(new Error("the preview could not be shown"));
    img.src = src;
  });
}

// ---- zero-shot --------------------------------------------------------------------------------
function lines(id) { return $(id).value.split("\n").map((s) => s.trim()).filter(Boolean); }

async function zeroShot() {
  if (!state.file) return;
  const out = await busy("zs-panel", api("zero_shot", formWith({ labels: lines("labels") })));
  const list = $("zs-bars"); list.innerHTML = "";
  const order = out.classes.map((c, i) => [c, out.probabilities[i]]).sort((a, b) => b[1] - a[1]);
  for (const [label, p] of order) {
    const li = el("li", ""); li.className = "bar-row"; li.dataset.label = label; li.dataset.prob = String(p);
    const bar = el("div", ""); bar.className = "bar"; bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `${label}: ${(p * 100).toFixed(1)}%`);
    const fill = el("span", ""); fill.style.width = `${(p * 100).toFixed(2)}%`; bar.append(fill);
    li.append(el("span", label), bar, span(p.toFixed(3), "num"));
    list.append(li);
  }
}

// ---- grounding --------------------------------------------------------------------------------
async function ground() {
  if (!state.file) return;
  const phrases = lines("phrases");
  const results = [];
  for (const phrase of phrases) results.push({ phrase, ...(await busy("ground-panel", api("ground", formWith({ phrase })))) });
  state.ground = results; state.heat = 0;
  const list = $("ground-results"); list.innerHTML = "";
  results.forEach((r, i) => {
    const li = el("li", ""); li.dataset.box = r.box.join(","); li.dataset.boxModel = r.box_model_input.join(",");
    li.dataset.disagrees = String(r.location_check.disagrees);
    const sw = el("span", ""); sw.className = "swatch"; sw.style.background = COLOURS[i % COLOURS.length];
    const body = el("div", "");
    const radio = el("input", ""); radio.type = "radio"; radio.name = "heat-choice"; radio.id = `heat-${i}`; radio.checked = i === 0;
    radio.addEventListener("change", () => { state.heat = i; drawHeat(); });
    const label = el("label", ""); label.htmlFor = radio.id; label.append(...phraseWithMarks(r.phrase, r.location_check));
    const where = r.location_check.box;
    const info = el("div", `box [${r.box.map((v) => v.toFixed(3)).join(", ")}] · score ${r.score.toFixed(3)} · box is ` +
      `${where.side ? `on the patient's ${where.side}` : "central"}, ${where.zone}` +
      (r.location_check.disagrees ? " · disagrees with the highlighted words" : ""));
    info.className = "muted";
    body.append(radio, " ", label, info);
    li.append(sw, body); list.append(li);
  });
  drawHeat(); drawOverlay();
}

function phraseWithMarks(phrase, check) {
  const parts = []; let at = 0;
  for (const w of check.words) {
    parts.push(phrase.slice(at, w.start));
    const mark = el("mark", phrase.slice(w.start, w.end));
    mark.className = w.agrees ? "agree" : "disagree";
    mark.title = w.agrees ? `the box agrees (${w.axis}: ${w.box_says || "central"})`
      : `the box says ${w.axis} ${w.box_says}, the phrase ${w.says}`;
    parts.push(mark); at = w.end;
  }
  parts.push(phrase.slice(at));
  return parts;
}

// ---- regions ----------------------------------------------------------------------------------
function boxInputs() { return ["box-x0", "box-y0", "box-x1", "box-y1"].map((id) => Number($(id).value)); }

async function closestPhrases() {
  if (!state.file) throw new ApiError(0, "upload an image first");
  const box = boxInputs(), candidates = lines("candidates");
  state.region = box; drawOverlay();
  const regions = await busy("region-panel", api("encode_regions", formWith({ boxes: [box] })));
  const texts = await busy("region-panel", api("encode_text", { texts: candidates }));
  const r = regions.embeddings[0];
  const scored = candidates.map((t, i) => [t, cosine(r, texts[i])]).sort((a, b) => b[1] - a[1]);
  const list = $("region-results"); list.innerHTML = "";
  for (const [t, s] of scored.slice(0, 5)) {
    const li = el("li", ""); li.className = "bar-row"; li.dataset.phrase = t;
    li.append(el("span", t), el("span", ""), span(s.toFixed(3), "num")); list.append(li);
  }
}

function cosine(a, b) {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return d / Math.sqrt(na * nb || 1);
}

function wireDrawing() {
  const o = $("overlay"); let start = null;
  o.addEventListener("pointerdown", (ev) => { if (!state.file) return; start = pointer(ev); o.setPointerCapture(ev.pointerId); });
  o.addEventListener("pointermove", (ev) => {
    if (!start) return;
    const p = pointer(ev);
    state.drawing = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
    drawOverlay();
  });
  o.addEventListener("pointerup", () => {
    if (!start || !state.drawing) { start = null; return; }
    const b = toUpload(state.drawing); start = null; state.drawing = null;
    if (b[2] - b[0] < 0.01 || b[3] - b[1] < 0.01) { drawOverlay(); return; }  // a click, or a box in the padding
    ["box-x0", "box-y0", "box-x1", "box-y1"].forEach((id, i) => { $(id).value = b[i].toFixed(3); });
    runAll([closestPhrases]);
  });
}

// ---- retrieval --------------------------------------------------------------------------------
async function retrieve() {
  if (!state.file) return;
  const out = await busy("retrieve-panel", api("retrieve", formWith({ top_k: $("top-k").value, target: $("target").value })));
  const body = $("retrieve-results").tBodies[0]; body.innerHTML = "";
  out.results.forEach((it, i) => {
    const tr = el("tr", "");
    for (const v of [i + 1, it.id, it.modality, (it.labels || []).join(", ") || "–", it.score.toFixed(3)]) tr.append(el("td", String(v)));
    body.append(tr);
  });
}

// ---- helpers and wiring -----------------------------------------------------------------------
function el(tag, text) { const e = document.createElement(tag); if (text) e.textContent = text; return e; }
function span(text, cls) { const s = el("span", text); s.className = cls; return s; }

async function busy(panelId, promise) {
  const panel = $(panelId); panel.setAttribute("aria-busy", "true");
  panel.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try { return await promise; } finally {
    panel.removeAttribute("aria-busy");
    panel.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
}

function onSubmit(id, step) {
  $(id).addEventListener("submit", (ev) => { ev.preventDefault(); clearMessage(); runAll([step]); });
}

function init() {
  $("file").addEventListener("change", (ev) => useFile(ev.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => { ev.preventDefault(); zone.classList.remove("over"); useFile(ev.dataTransfer.files[0]); });
  zone.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("file").click(); } });
  $("opacity").addEventListener("input", (ev) => {
    $("heat").style.opacity = String(ev.target.value / 100); $("opacity-value").textContent = `${ev.target.value}%`;
  });
  $("heat").style.opacity = String($("opacity").value / 100);
  $("vocab-add").addEventListener("click", () => {
    const v = $("vocab").value;
    if (v && !lines("labels").includes(v)) $("labels").value = [...lines("labels"), v].join("\n");
  });
  onSubmit("zs-form", zeroShot); onSubmit("ground-form", ground); onSubmit("retrieve-form", retrieve);
  onSubmit("region-form", closestPhrases);
  ["box-x0", "box-y0", "box-x1", "box-y1"].forEach((id) => $(id).addEventListener("change", () => { state.region = boxInputs(); drawOverlay(); }));
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); state.key = $("api-key").value.trim() || null; clearMessage();
    loadMetadata().then(() => state.file && runAll([zeroShot, ground, retrieve])).catch(report);
  });
  wireDrawing();
  loadMetadata().catch((err) => { if (err.status !== 401) report(err); else $("model-line").textContent = "model: needs the API key"; });
}

document.addEventListener("DOMContentLoaded", init);
