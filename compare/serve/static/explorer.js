// The explorer's page: draw or pick an image, see every framework side by side.
// Talks to compare/serve/app.py: /api/summary, /api/predict, /api/explain, /api/sources,
// /api/lists, /api/curves, /api/sections. Maps arrive as base64 float32 (NHWC of one image).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  summary: null,
  maps: [],          // the map layers' names, in network order
  kinds: {},         // layer name -> kind
  reference: null,   // the framework differences are taken against
  mode: "maps",
  results: null,     // the last /api/predict answer, maps decoded
  selected: 0,       // index into maps: the layer the keyboard is on
  request: { index: 0 },  // what the shown image is: {index} or {drawing}
  inFlight: false,
  dirty: false,
  drawn: false,
  pick: null,        // the last clicked {layer, row, col, channel}
  restarts: {},      // framework -> when its worker was last found dead and started again
};

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function notice(text) { $("notice").textContent = text; }

function decode(map) {
  const bytes = Uint8Array.from(atob(map.data), (c) => c.charCodeAt(0));
  return { shape: map.shape, data: new Float32Array(bytes.buffer) };
}

// ------------------------------------------------------------------ the image

function drawGrey(canvas, image, box) {
  // image: 28 rows of 28 values in [0, 1]; box: [r0, r1, c0, c1] drawn in red, or none
  const n = image.length, scale = canvas.width / n, ctx = canvas.getContext("2d");
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < image[r].length; c++) {
      const v = Math.round(255 * image[r][c]);
      ctx.fillStyle = `rgb(${v},${v},${v})`;
      ctx.fillRect(c * scale, r * scale, scale, scale);
    }
  }
  if (box) {
    ctx.strokeStyle = "#ff3b3b";
    ctx.lineWidth = 2;
    ctx.strokeRect(box[2] * scale, box[0] * scale, (box[3] - box[2]) * scale, (box[1] - box[0]) * scale);
  }
}

function setupPad() {
  const pad = $("pad"), ctx = pad.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height);
  let last = null;
  const at = (e) => {
    const rect = pad.getBoundingClientRect();
    return [(e.clientX - rect.left) * pad.width / rect.width, (e.clientY - rect.top) * pad.height / rect.height];
  };
  pad.addEventListener("pointerdown", (e) => { pad.setPointerCapture(e.pointerId); last = at(e); stroke(last, last); });
  pad.addEventListener("pointermove", (e) => { if (last) { const p = at(e); stroke(last, p); last = p; } });
  const end = () => { last = null; };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  function stroke(a, b) {
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
    state.drawn = true;
    state.request = { drawing: drawing() };
    update();
  }
  $("clear").addEventListener("click", () => {
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height);
    state.drawn = false;
    state.request = { drawing: drawing() };
    update();
  });
}

function drawing() {
  // the pad at 140x140, its red channel as base64 bytes: ink 255, paper 0
  const size = 140, small = document.createElement("canvas");
  small.width = small.height = size;
  const ctx = small.getContext("2d");
  ctx.drawImage($("pad"), 0, 0, size, size);
  const pixels = ctx.getImageData(0, 0, size, size).data;
  const ink = new Uint8Array(size * size);
  for (let i = 0; i < ink.length; i++) ink[i] = pixels[4 * i];
  let text = "";
  for (let i = 0; i < ink.length; i += 8192) text += String.fromCharCode.apply(null, ink.subarray(i, i + 8192));
  return { width: size, height: size, data: btoa(text) };
}

// ------------------------------------------------------------------ predictions

async function update() {
  // one request in flight; strokes meanwhile are sent once it returns
  if (state.inFlight) { state.dirty = true; return; }
  state.inFlight = true;
  try {
    const answer = await api("/api/predict", state.request);
    show(answer);
  } catch (error) {
    notice(error.message);
  } finally {
    state.inFlight = false;
    if (state.dirty) { state.dirty = false; update(); }
  }
}

function show(answer) {
  for (const result of Object.values(answer.results)) {
    if (result.maps) for (const name of Object.keys(result.maps)) result.maps[name] = decode(result.maps[name]);
  }
  state.results = answer;
  drawGrey($("input"), answer.image);
  $("input-caption").textContent = answer.label === null
    ? "what the frameworks see (28x28, MNIST's way)"
    : `test image ${state.request.index}: ${state.summary.classes[answer.label]}`;
  const problems = [];
  for (const [name, result] of Object.entries(answer.results)) {
    if (result.restarted) state.restarts[name] = new Date().toLocaleTimeString();
    if (result.error) problems.push(`${name}: ${result.error}`);
    else if (state.restarts[name]) {
      problems.push(`${name}: its worker had stopped and was started again at ${state.restarts[name]}`);
    }
  }
  notice(problems.join(" · "));
  renderPredictions();
  renderLayers();
  if (state.pick) explainPixel(state.pick);
}

function renderPredictions() {
  const box = $("predictions");
  box.replaceChildren();
  for (const [name, result] of Object.entries(state.results.results)) {
    const div = document.createElement("div");
    div.className = "framework";
    div.dataset.framework = name;
    const title = document.createElement("h3");
    title.textContent = name;
    div.append(title);
    if (result.error) {
      const p = document.createElement("p");
      p.className = "error"; p.textContent = result.error;
      div.append(p); box.append(div); continue;
    }
    const guess = document.createElement("div");
    guess.className = "guess";
    guess.textContent = state.summary.classes[result.class];
    div.append(guess);
    result.probabilities.forEach((p, k) => {
      const bar = document.createElement("div");
      bar.className = "bar" + (k === result.class ? " top" : "");
      bar.innerHTML = `<span class="label"></span><span class="fill" style="width:${(p * 6).toFixed(2)}rem"></span><span class="p">${(100 * p).toFixed(1)}%</span>`;
      bar.querySelector(".label").textContent = state.summary.classes[k];
      div.append(bar);
    });
    if (state.restarts[name]) {
      const p = document.createElement("p");
      p.className = "restarted"; p.textContent = `worker restarted at ${state.restarts[name]}`;
      div.append(p);
    }
    box.append(div);
  }
}

// ------------------------------------------------------------------ feature maps

function colour(t, signed) {
  // t in [-1, 1]: white at 0, red positive, blue negative
  const a = Math.min(1, Math.abs(t)), fade = Math.round(255 * (1 - a));
  return t >= 0 || !signed ? [255, fade, fade] : [fade, fade, 255];
}

function mosaic(map, values, scaleTo, signed) {
  // one canvas: every channel of map (shape [h, w, c]) as a tile, values normalised by scaleTo
  const [h, w, c] = map.shape, cols = Math.ceil(Math.sqrt(c)), rows = Math.ceil(c / cols);
  const zoom = Math.max(1, Math.floor(48 / Math.max(h, w))), gap = 1;
  const tw = w * zoom + gap, th = h * zoom + gap;
  const canvas = document.createElement("canvas");
  canvas.width = cols * tw; canvas.height = rows * th;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(canvas.width, canvas.height);
  img.data.fill(230);
  for (let ch = 0; ch < c; ch++) {
    const x0 = (ch % cols) * tw, y0 = Math.floor(ch / cols) * th;
    for (let r = 0; r < h; r++) {
      for (let q = 0; q < w; q++) {
        const v = values[(r * w + q) * c + ch], rgb = colour(scaleTo > 0 ? v / scaleTo : 0, signed);
        for (let dy = 0; dy < zoom; dy++) {
          let o = ((y0 + r * zoom + dy) * canvas.width + x0 + q * zoom) * 4;
          for (let dx = 0; dx < zoom; dx++, o += 4) {
            img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
          }
        }
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  canvas.dataset.geometry = JSON.stringify({ h, w, c, cols, tw, th, zoom });
  return canvas;
}

function maxAbs(values) {
  let m = 0;
  for (const v of values) if (Math.abs(v) > m) m = Math.abs(v);
  return m;
}

function renderLayers() {
  const box = $("layers");
  box.replaceChildren();
  if (!state.results) return;
  const ok = Object.entries(state.results.results).filter(([, r]) => !r.error);
  const ref = state.results.results[state.reference];
  state.maps.forEach((layer, i) => {
    const div = document.createElement("div");
    div.className = "layer" + (i === state.selected ? " selected" : "");
    div.dataset.layer = layer;
    const first = ok.length ? ok[0][1].maps[layer] : null;
    const title = document.createElement("h3");
    title.innerHTML = `<span></span> <small></small>`;
    title.firstChild.textContent = layer;
    title.lastChild.textContent = `${state.kinds[layer]}${first ? ", " + first.shape.join("x") : ""}`;
    div.append(title);
    const row = document.createElement("div");
    row.className = "maps";
    const diff = state.mode === "diff" && ref && !ref.error;
    const shown = ok.map(([name, r]) => {
      const values = r.maps[layer].data;
      if (!diff) return [name, r.maps[layer], values];
      const base = ref.maps[layer].data, d = new Float32Array(values.length);
      for (let k = 0; k < d.length; k++) d[k] = Math.abs(values[k] - base[k]);
      return [name, r.maps[layer], d];
    });
    const scale = Math.max(0, ...shown.map(([, , v]) => maxAbs(v)));
    for (const [name, map, values] of shown) {
      const fig = document.createElement("figure");
      const canvas = mosaic(map, values, diff ? maxAbs(values) : scale, !diff);
      canvas.dataset.framework = name;
      canvas.setAttribute("aria-label", `${layer} in ${name}`);
      canvas.addEventListener("click", (e) => clickMap(e, layer, canvas));
      const cap = document.createElement("figcaption");
      cap.textContent = diff
        ? `${name}: max |${name} − ${state.reference}| = ${maxAbs(values).toExponential(2)}`
        : `${name} (scale ±${scale.toPrecision(3)})`;
      fig.append(canvas, cap);
      row.append(fig);
    }
    div.append(row);
    box.append(div);
  });
}

function clickMap(e, layer, canvas) {
  const g = JSON.parse(canvas.dataset.geometry), rect = canvas.getBoundingClientRect();
  const x = (e.clientX - rect.left) * canvas.width / rect.width;
  const y = (e.clientY - rect.top) * canvas.height / rect.height;
  const channel = Math.floor(y / g.th) * g.cols + Math.floor(x / g.tw);
  const row = Math.floor((y % g.th) / g.zoom), col = Math.floor((x % g.tw) / g.zoom);
  if (channel >= g.c || row >= g.h || col >= g.w) return;
  state.selected = state.maps.indexOf(layer);
  for (const div of document.querySelectorAll(".layer")) div.classList.toggle("selected", div.dataset.layer === layer);
  explainPixel({ layer, row, col, channel });
}

// ------------------------------------------------------------------ inside a layer

function numbers(grid, highlight) {
  // a 2-D array as a table of numbers; highlight: [r, c] of a cell to mark
  const table = document.createElement("table");
  table.className = "numbers";
  grid.forEach((line, r) => {
    const tr = table.insertRow();
    line.forEach((v, c) => {
      const td = tr.insertCell();
      td.textContent = Number(v).toPrecision(4);
      if (highlight && highlight[0] === r && highlight[1] === c) td.className = "max";
    });
  });
  return table;
}

function channelSlice(cube, k) { return cube.map((line) => line.map((cell) => cell[k])); }

async function explainPixel(pick) {
  state.pick = pick;
  const panel = $("kernel-panel");
  panel.hidden = false;
  let answer;
  try {
    answer = await api("/api/explain", { ...state.request, ...pick });
  } catch (error) { notice(error.message); return; }
  $("kernel-title").textContent =
    `Inside ${answer.layer} (${answer.kind}): output row ${pick.row}, column ${pick.col}, channel ${pick.channel}`;
  if (state.results) drawGrey($("field"), state.results.image, answer.receptive_field);
  const box = $("kernel");
  box.replaceChildren();
  for (const [name, r] of Object.entries(answer.results)) {
    const div = document.createElement("div");
    div.className = "kernel-result";
    div.dataset.framework = name;
    const h = document.createElement("h4");
    h.textContent = name;
    div.append(h);
    if (r.error) { div.append(document.createTextNode(r.error)); box.append(div); continue; }
    const line = (text) => { const p = document.createElement("div"); p.textContent = text; div.append(p); };
    if (r.kind === "conv") {
      // the input channel that contributes most, shown in full; the rest summed
      const sums = r.products[0][0].map((_, k) => r.products.flat().reduce((s, cell) => s + cell[k], 0));
      const k = sums.reduce((best, v, i) => (Math.abs(v) > Math.abs(sums[best]) ? i : best), 0);
      line(`input channel ${r.input_channels[0] + k} of ${r.input_channels[0]}–${r.input_channels[1] - 1} (its part ${sums[k].toPrecision(5)}):`);
      const trio = document.createElement("div");
      trio.className = "row";
      for (const [label, cube] of [["input", r.patch], ["kernel", r.kernel], ["products", r.products]]) {
        const f = document.createElement("figure");
        const cap = document.createElement("figcaption");
        cap.textContent = label;
        f.append(cap, numbers(channelSlice(cube, k)));
        trio.append(f);
      }
      div.append(trio);
      line(`dot product over ${sums.length} channel(s) = ${r.dot.toPrecision(7)}`);
      line(`+ bias ${r.bias.toPrecision(5)} = ${r.pre_activation.toPrecision(7)}`);
      line(`${r.activation}(…) = ${r.computed.toPrecision(7)}`);
    } else if (r.kind === "pool" || r.kind === "avgpool") {
      div.append(numbers(r.patch, r.argmax));
      line(`${r.kind === "pool" ? "max" : "mean"} = ${r.computed.toPrecision(7)}`);
    } else if (r.kind === "batchnorm") {
      line(`γ (x − μ) / √(σ² + ε) + β = ${r.gamma.toPrecision(5)} × (${r.input.toPrecision(6)} − ${r.mean.toPrecision(6)}) / √(${r.variance.toPrecision(6)} + ${r.epsilon}) + ${r.beta.toPrecision(5)} = ${r.computed.toPrecision(7)}`);
    } else if (r.kind === "add") {
      line(`${r.inputs[0]} + ${r.inputs[1]} = ${r.a.toPrecision(6)} + ${r.b.toPrecision(6)} = ${r.computed.toPrecision(7)}`);
    }
    line(`${name}'s own output: ${r.output.toPrecision(7)} (differs from the sum above by ${r.difference.toExponential(2)})`);
    box.append(div);
  }
  showSources(answer.layer);
}

async function showSources(layer) {
  const box = $("sources");
  if (box.dataset.layer === layer) return;
  box.dataset.layer = layer;
  box.replaceChildren();
  let answer;
  try { answer = await api(`/api/sources/${encodeURIComponent(layer)}`); } catch (error) { notice(error.message); return; }
  for (const [name, entries] of Object.entries(answer.sources)) {
    if (!Array.isArray(entries)) continue;
    for (const entry of entries) {
      const d = document.createElement("details");
      const s = document.createElement("summary");
      s.textContent = `${name}: ${entry.object} (${entry.file}:${entry.line})`;
      const pre = document.createElement("pre");
      pre.textContent = entry.source || entry.error || "";
      d.append(s, pre);
      box.append(d);
    }
  }
}

// ------------------------------------------------------------------ keyboard

function select(i) {
  state.selected = Math.max(0, Math.min(state.maps.length - 1, i));
  const layer = state.maps[state.selected];
  let chosen = null;
  for (const div of document.querySelectorAll(".layer")) {
    div.classList.toggle("selected", div.dataset.layer === layer);
    if (div.dataset.layer === layer) chosen = div;
  }
  if (chosen) chosen.scrollIntoView({ block: "nearest" });
  const result = state.results && state.results.results[state.reference];
  if (result && result.maps) {
    const [h, w] = result.maps[layer].shape;
    explainPixel({ layer, row: Math.floor(h / 2), col: Math.floor(w / 2), channel: 0 });
  }
}

document.addEventListener("keydown", (e) => {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
  if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); select(state.selected + 1); }
  if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); select(state.selected - 1); }
});

// ------------------------------------------------------------------ the folder's lists

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text;
  select.append(o);
}

function pickTest(index) {
  if (index === "" || index === null || index === undefined) return;
  $("index").value = index;
  state.request = { index: Number(index) };
  update();
}

async function loadLists() {
  const lists = await api("/api/lists");
  const classes = state.summary.classes;
  const dis = $("disagree");
  option(dis, "", `${lists.disagree.length} images`);
  for (const d of lists.disagree) {
    const guesses = Object.entries(d.predictions).map(([n, p]) => `${n} ${classes[p]}`).join(", ");
    option(dis, d.index, `#${d.index} (${classes[d.label]}): ${guesses}`);
  }
  dis.addEventListener("change", () => pickTest(dis.value));
  const fw = $("miss-framework"), missed = $("missed"), cell = $("cell");
  for (const name of Object.keys(lists.frameworks)) option(fw, name, name);
  const fill = () => {
    const data = lists.frameworks[fw.value];
    missed.replaceChildren();
    option(missed, "", `${data.misclassified.length} images`);
    for (const i of data.misclassified) option(missed, i, `#${i}`);
    $("confusion-name").textContent = fw.value;
    const table = $("confusion");
    table.replaceChildren();
    const head = table.insertRow();
    head.append(document.createElement("th"));
    classes.forEach((c) => { const th = document.createElement("th"); th.textContent = c; head.append(th); });
    data.confusion.forEach((line, t) => {
      const tr = table.insertRow();
      const th = document.createElement("th"); th.textContent = classes[t]; tr.append(th);
      line.forEach((count, p) => {
        const td = tr.insertCell();
        td.textContent = count;
        td.className = t === p ? "diag" : count ? "off" : "";
        if (t !== p && count) td.addEventListener("click", () => {
          cell.replaceChildren();
          option(cell, "", `${count} images: true ${classes[t]}, predicted ${classes[p]}`);
          for (const i of data.cells[`${t},${p}`]) option(cell, i, `#${i}`);
          cell.focus();
        });
      });
    });
  };
  fw.addEventListener("change", fill);
  missed.addEventListener("change", () => pickTest(missed.value));
  cell.addEventListener("change", () => pickTest(cell.value));
  fill();
}

// ------------------------------------------------------------------ curves and sections

async function loadCurves() {
  const runs = await api("/api/curves");
  const box = $("curves");
  const charts = [
    ["loss per epoch", "epochs", [["train_loss", "train"], ["val_loss", "validation"]]],
    ["accuracy per epoch", "epochs", [["train_accuracy", "train"], ["val_accuracy", "validation"]]],
    ["loss per step", "steps", [["step_losses", "step"]]],
  ];
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
  const names = [...new Set(runs.map((r) => r.framework))];
  for (const [title, axis, keys] of charts) {
    const length = Math.max(0, ...runs.map((r) => (axis === "steps" ? r.step_losses.length : r.epochs.length)));
    if (!length) continue;
    const x = Array.from({ length }, (_, i) => i + 1);
    const series = [{ label: axis }], data = [x];
    for (const run of runs) {
      for (const [key, label] of keys) {
        const values = run[key];
        if (!values.length) continue;
        data.push(x.map((_, i) => (i < values.length ? values[i] : null)));
        series.push({
          label: `${run.framework} seed ${run.seed} ${label}`,
          stroke: palette[names.indexOf(run.framework) % palette.length],
          dash: label === "validation" ? [6, 4] : undefined,
          width: axis === "steps" ? 1 : 2,
          points: { show: axis !== "steps" },
        });
      }
    }
    const div = document.createElement("div");
    div.className = "curve";
    box.append(div);
    const whole = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];  // epochs and steps
    new uPlot({ title, width: 560, height: 300, series, scales: { x: { time: false } },
      axes: [{ label: axis, incrs: whole }, {}] }, data, div);
  }
}

async function loadSections() {
  const sections = await api("/api/sections");
  const box = $("report-sections");
  box.innerHTML = sections.map((s) => s.html).join("\n");  // made and escaped by the server
}

// ------------------------------------------------------------------ start

async function start() {
  const summary = await api("/api/summary");
  state.summary = summary;
  state.maps = summary.maps;
  for (const layer of summary.layers) state.kinds[layer.name] = layer.kind;
  state.reference = summary.frameworks[0];
  const acc = Object.entries(summary.accuracy).map(([n, a]) => `${n} ${(100 * a).toFixed(2)} %`).join(", ");
  $("about").textContent = `${summary.folder}: ${summary.dataset}, ${summary.test_images} test images; test accuracy ${acc}`;
  const ref = $("reference");
  for (const name of summary.frameworks) option(ref, name, name);
  ref.addEventListener("change", () => { state.reference = ref.value; renderLayers(); });
  $("mode").addEventListener("change", () => { state.mode = $("mode").value; renderLayers(); });
  $("pick").addEventListener("submit", (e) => { e.preventDefault(); pickTest($("index").value); });
  setupPad();
  notice("starting the frameworks' workers…");
  update();
  loadLists().catch((e) => notice(e.message));
  loadCurves().catch((e) => notice(e.message));
  loadSections().catch((e) => notice(e.message));
}

start().catch((error) => notice(error.message));
