// The explain page's drawing (minibert/explainer.py writes this file into the page as it is).
//
// Everything drawn comes from the JSON in <script id="minibert-data">; nothing is fetched, so
// the page works offline. Plain DOM and SVG, no framework, no build step. The page is built
// once (build) and then redrawn in parts when a control changes (drawSentence, drawColumn);
// hovering a token only shows and hides lines that are already drawn (hoverToken).
//
// Ids the tests use: #sentence, #layer-<c> and #head-<c> (c = 0 the model or student, 1 the
// teacher), #matrix-<c> (rect.cell: one per query/key pair, fill-opacity = the probability),
// #lines-<c> (line.link, .query tokens), #follow, #losses.
"use strict";

const DATA = JSON.parse(document.getElementById("minibert-data").textContent);
const SVG_NS = "http://www.w3.org/2000/svg";  // a name, not a URL that is loaded
const COLORS = { model: "#2b6cb0", student: "#2b6cb0", teacher: "#c05621" };
const COMPARE = DATA.comparison;  // null when there is no teacher
const MATRIX_PAD = 80;  // room for the token labels left of and above the matrix, in pixels

// What the reader has chosen: the sentence, and each column's layer and head (0-based).
const state = { sentence: 0, layer: DATA.models.map(() => 0), head: DATA.models.map(() => 0), follow: true };
if (COMPARE) state.layer[1] = COMPARE.mapping[0] - 1;  // the teacher starts at the layer S1 learns from
const lines = [];  // per column: the drawn links [{el, q}], so hovering need not redraw

// ------------------------------------------------------------------------- small helpers

function el(tag, attrs = {}, parent = null, text = null) {
  // An HTML element (or an SVG one for the SVG tags) with attributes, appended to parent.
  const svgTags = ["svg", "rect", "line", "text", "title", "g", "path"];
  const node = svgTags.includes(tag) ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(x) {
  // A loss or probability in 4 significant digits; null (the shapes forbid the loss) as n/a.
  return x === null || x === undefined ? "n/a" : Number(x).toPrecision(4);
}

function select(id, labels, value, onChange, parent) {
  const box = el("select", { id: id }, parent);
  labels.forEach((label, i) => el("option", { value: i }, box, label));
  box.value = value;
  box.addEventListener("change", () => onChange(Number(box.value)));
  return box;
}

// The attention a column shows now: [query][key] probabilities of its layer and head.
function attention(c) {
  return DATA.models[c].examples[state.sentence].attention[state.layer[c]][state.head[c]];
}

// ------------------------------------------------------------------------------ the page

function build() {
  const app = document.getElementById("app");
  app.textContent = "";
  const header = el("header", {}, app);
  el("h1", {}, header, COMPARE ? "Teacher and student, side by side" : "Attention, layer by layer");
  el("p", { class: "lead" }, header, COMPARE
    ? "The student (left) learns from the teacher (right): each student layer from the teacher layer the " +
      "mapping gives it. Pick a layer and a head; hover a token on the left of the lines to see where it attends."
    : "Pick a layer and a head; hover a token on the left of the lines to see where it attends.");
  const controls = el("div", { class: "controls" }, header);
  el("label", { for: "sentence" }, controls, "Sentence ");
  select("sentence", DATA.sentences.map((s) => s.text), 0, (i) => { state.sentence = i; drawAll(); }, controls);
  el("p", { id: "tokens", class: "tokens" }, header);
  if (COMPARE) buildMapping(el("section", { id: "mapping" }, app));
  const columns = el("div", { class: "columns" }, app);
  DATA.models.forEach((m, c) => buildColumn(el("section", { class: "model " + m.role, id: "model-" + c }, columns), c));
  el("footer", {}, app, "Attention: softmax(QK^T / sqrt(d_head)) of each head, a row per query token, a column per " +
    "key token (each row sums to 1). Darker: more attention. Numbers: minibert-data in this file.");
  drawAll();
}

function buildColumn(section, c) {
  const m = DATA.models[c];
  el("h2", { style: "color:" + COLORS[m.role] }, section, m.role + ": " + m.name);
  el("p", { class: "shape" }, section, m.layers + " layers, " + m.hidden + " wide, " + m.heads + " heads");
  el("div", { class: "prediction", id: "prediction-" + c }, section);
  const controls = el("div", { class: "controls" }, section);
  el("label", { for: "layer-" + c }, controls, "Layer ");
  select("layer-" + c, [...Array(m.layers).keys()].map((i) => String(i + 1)), 0, (i) => setLayer(c, i), controls);
  el("label", { for: "head-" + c }, controls, " Head ");
  select("head-" + c, [...Array(m.heads).keys()].map((i) => String(i + 1)), 0, (i) => setHead(c, i), controls);
  const views = el("div", { class: "views" }, section);
  el("svg", { id: "matrix-" + c, class: "matrix" }, views);
  el("svg", { id: "lines-" + c, class: "lines" }, views);
}

// A student layer or head chosen: with "follow", the teacher shows the layer it learns from.
function setLayer(c, i) {
  state.layer[c] = i;
  if (COMPARE && c === 0 && state.follow) state.layer[1] = COMPARE.mapping[i] - 1;
  drawAll();
}

function setHead(c, i) {
  state.head[c] = i;
  if (COMPARE && c === 0 && state.follow && DATA.models[1].heads === DATA.models[0].heads) state.head[1] = i;
  drawAll();
}

function drawAll() {
  const tokens = document.getElementById("tokens");
  tokens.textContent = "";
  DATA.sentences[state.sentence].tokens.forEach((t) => el("span", { class: "token" }, tokens, t));
  if (COMPARE) drawMapping();
  DATA.models.forEach((m, c) => drawColumn(c));
}

// --------------------------------------------------------------- one model: prediction, attention

function drawColumn(c) {
  document.getElementById("layer-" + c).value = state.layer[c];
  document.getElementById("head-" + c).value = state.head[c];
  drawPrediction(c);
  const tokens = DATA.sentences[state.sentence].tokens;
  const A = attention(c);
  drawMatrix(c, tokens, A);
  drawLines(c, tokens, A);
}

function drawPrediction(c) {
  const box = document.getElementById("prediction-" + c);
  box.textContent = "";
  const p = DATA.models[c].examples[state.sentence].prediction;
  if (!p) { el("p", { class: "note" }, box, "An encoder without a classifier: no prediction."); return; }
  if (p.kind === "none") { el("p", {}, box, "Predicted score: " + fmt(p.scores[0])); return; }
  const best = p.scores.indexOf(Math.max(...p.scores));
  p.labels.forEach((label, i) => {  // one bar per class, the predicted one in bold
    const row = el("div", { class: "bar" + (i === best ? " best" : "") }, box);
    el("span", { class: "label" }, row, label);
    const track = el("span", { class: "track" }, row);
    const color = COLORS[DATA.models[c].role];
    el("span", { class: "fill", style: `width:${100 * p.scores[i]}%;background:${color}` }, track);
    el("span", { class: "value" }, row, p.scores[i].toFixed(3));
  });
}

function drawMatrix(c, tokens, A) {
  // A heat map: row q = query token, column k = key token, opacity = A[q][k].
  const T = tokens.length, cell = Math.max(6, Math.min(22, Math.floor(360 / T))), pad = MATRIX_PAD;
  const svg = document.getElementById("matrix-" + c);
  svg.textContent = "";
  svg.setAttribute("width", pad + T * cell + 4);
  svg.setAttribute("height", pad + T * cell + 4);
  el("rect", { x: pad, y: pad, width: T * cell, height: T * cell, class: "frame" }, svg);
  tokens.forEach((t, i) => {
    el("text", { x: pad - 4, y: pad + i * cell + cell * 0.7, class: "row-label" }, svg, t);
    el("text", { transform: `translate(${pad + i * cell + cell * 0.7},${pad - 4}) rotate(-90)`, class: "col-label" },
      svg, t);
  });
  A.forEach((row, q) => row.forEach((p, k) => {
    const r = el("rect", { x: pad + k * cell, y: pad + q * cell, width: cell, height: cell, class: "cell",
      fill: COLORS[DATA.models[c].role], "fill-opacity": p, "data-q": q, "data-k": k }, svg);
    el("title", {}, r, `${tokens[q]} -> ${tokens[k]}: ${p.toFixed(4)}`);
  }));
  // the row of the hovered token, outlined (hidden until a token is hovered)
  el("rect", { id: "row-" + c, x: pad, y: pad, width: T * cell, height: cell, class: "row-mark",
    visibility: "hidden", "data-cell": cell }, svg);
}

function drawLines(c, tokens, A) {
  // BertViz's view: queries on the left, keys on the right, a line per pair, opacity = attention.
  const T = tokens.length, h = 18, x0 = 100, x1 = 220, top = 10;
  const svg = document.getElementById("lines-" + c);
  svg.textContent = "";
  svg.setAttribute("width", x1 + 100);
  svg.setAttribute("height", top + T * h + 4);
  const color = COLORS[DATA.models[c].role];
  lines[c] = [];
  A.forEach((row, q) => row.forEach((p, k) => {
    const line = el("line", { x1: x0 + 4, y1: top + q * h + h / 2, x2: x1 - 4, y2: top + k * h + h / 2,
      stroke: color, "stroke-opacity": p, "stroke-width": 2, class: "link" }, svg);
    lines[c].push({ el: line, q: q });
  }));
  tokens.forEach((t, i) => {
    // the key side's shading shows the hovered token's attention; the query side is what to hover
    el("rect", { x: x1, y: top + i * h + 1, width: 96, height: h - 2, fill: color, "fill-opacity": 0, class: "key-bg" },
      svg);
    el("text", { x: x1 + 4, y: top + i * h + h * 0.7, class: "key" }, svg, t);
    const label = el("text", { x: x0, y: top + i * h + h * 0.7, class: "query", "data-q": i }, svg, t);
    label.addEventListener("mouseenter", () => hoverToken(c, i));
    label.addEventListener("mouseleave", () => hoverToken(c, null));
  });
}

function hoverToken(c, q) {
  // Show only query q's lines (all lines when q is null), shade its keys, outline its matrix row.
  const A = attention(c);
  for (const line of lines[c]) line.el.style.display = q === null || line.q === q ? "" : "none";
  document.querySelectorAll(`#lines-${c} .key-bg`).forEach((r, k) => {
    r.setAttribute("fill-opacity", q === null ? 0 : A[q][k]);
  });
  const mark = document.getElementById("row-" + c);
  mark.setAttribute("visibility", q === null ? "hidden" : "visible");
  if (q !== null) mark.setAttribute("y", MATRIX_PAD + q * Number(mark.dataset.cell));
}

// -------------------------------------------------------- the mapping and the distillation losses

function buildMapping(section) {
  el("h2", {}, section, "Which student layer learns from which teacher layer");
  el("svg", { id: "mapping-svg" }, section);
  const label = el("label", {}, section);
  const box = el("input", { type: "checkbox", id: "follow", checked: "" }, label);
  label.append(" the teacher column follows the mapping (its layer g(m), and the same head)");
  box.addEventListener("change", () => { state.follow = box.checked; });
  el("table", { id: "losses" }, section);
  el("p", { class: "note" }, section, `Layer mapping: ${COMPARE.strategy} (distill.layer_mapping). ` +
    `Hidden states through fit_dense: ${COMPARE.fit_dense}. TinyBERT's attention loss compares the scores ` +
    "before the softmax (the maps below draw the probabilities after it); MiniLM's KLs compare distributions. " +
    "The losses are this one sentence's; training minimises their mean over batches. Click a row or a " +
    "student layer to show that pair.");
}

function drawMapping() {
  // Two rows of boxes: teacher layers above, student layers below, a line from S_m to T_g(m);
  // E is the embedding output (TinyBERT's L_emb pairs the two).
  const svg = document.getElementById("mapping-svg");
  svg.textContent = "";
  const N = DATA.models[1].layers, M = DATA.models[0].layers, width = 640, bw = 40, bh = 24;
  svg.setAttribute("width", width + 20);
  svg.setAttribute("height", 130);
  const xt = (n) => 10 + n * (width - bw) / N, xs = (m) => 10 + m * (width - bw) / M;
  const chosen = state.layer[0] + 1;
  el("line", { x1: xs(0) + bw / 2, y1: 95, x2: xt(0) + bw / 2, y2: 35, class: "map-line emb" }, svg);
  COMPARE.mapping.forEach((g, i) => {
    el("line", { x1: xs(i + 1) + bw / 2, y1: 95, x2: xt(g) + bw / 2, y2: 35,
      class: "map-line" + (i + 1 === chosen ? " chosen" : "") }, svg);
  });
  for (let n = 0; n <= N; n++) box(svg, xt(n), 10, bw, bh, n ? "T" + n : "E", "teacher", null);
  for (let m = 0; m <= M; m++) box(svg, xs(m), 95, bw, bh, m ? "S" + m : "E", "student", m ? m - 1 : null);
  drawLossTable(chosen);
}

function box(svg, x, y, w, h, text, role, layer) {
  const g = el("g", { class: "layer-box" + (layer !== null ? " clickable" : "") }, svg);
  el("rect", { x: x, y: y, width: w, height: h, rx: 4, stroke: COLORS[role] }, g);
  el("text", { x: x + w / 2, y: y + h * 0.68 }, g, text);
  if (layer !== null) g.addEventListener("click", () => setLayer(0, layer));
}

function drawLossTable(chosen) {
  const table = document.getElementById("losses"), ex = COMPARE.examples[state.sentence];
  table.textContent = "";
  const R = COMPARE.relation_heads;
  const head = el("tr", {}, el("thead", {}, table));
  ["student", "teacher", "attention-score MSE (L_att term)", "hidden MSE (L_hid / L_emb)", "MiniLM attention KL",
    R ? `value-relation KL (${R} relation heads)` : "value-relation KL"].forEach((t) => el("th", {}, head, t));
  const body = el("tbody", {}, table);
  const row = (cells, cls, onClick) => {
    const tr = el("tr", { class: cls }, body);
    cells.forEach((t) => el("td", {}, tr, t));
    if (onClick) tr.addEventListener("click", onClick);
  };
  row(["E (embeddings)", "E", "", fmt(ex.hidden_mse[0]), "", ""], "emb", null);
  COMPARE.mapping.forEach((g, i) => row(["S" + (i + 1), "T" + g, fmt(ex.attention_mse[i]), fmt(ex.hidden_mse[i + 1]),
    fmt(ex.att_kl[i]), fmt(ex.value_kl[i])], i + 1 === chosen ? "chosen" : "", () => setLayer(0, i)));
  const sum = (xs) => (xs.some((x) => x === null) ? null : xs.reduce((a, b) => a + b, 0));
  row(["sum over layers", "", fmt(sum(ex.attention_mse)), fmt(sum(ex.hidden_mse.slice(1))), "", ""], "total", null);
}

build();
