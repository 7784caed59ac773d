// The rnnlab web page: no build step, no dependencies. Talks to the JSON API of the same server.
"use strict";
const $ = (id) => document.getElementById(id);
let models = [];
let abort = null;

function current() { return models.find((m) => m.name === $("model").value); }
function showError(message) { $("error").textContent = message || ""; }

async function postJSON(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                body: JSON.stringify(body) });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

async function loadModels() {
  const data = await (await fetch("/models")).json();
  models = data.models;
  $("model").innerHTML = models.map((m) => `<option value="${m.name}">${m.name} (${m.task})</option>`).join("");
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && models.some((m) => m.name === wanted)) $("model").value = wanted;
  choose();
}

function choose() {
  const m = current();
  showError("");
  for (const el of document.querySelectorAll(".panel")) el.hidden = true;
  if (!m) return;
  $("model-info").textContent = `${m.task} · ${m.parameters.toLocaleString()} parameters`;
  const dedicated = { textgen: "panel-textgen", classify: "panel-classify", tag: "panel-tag",
                      translate: "panel-translate" }[m.task];
  $(dedicated || "panel-predict").hidden = false;
}

// --- generation: server-sent events over a POST, parsed by hand --------------------------------------
const columns = [];
async function generate() {
  const m = current();
  $("output").textContent = $("prompt").value;
  columns.length = 0;
  drawHeat();
  showError("");
  abort = new AbortController();
  $("generate").disabled = true; $("stop").disabled = false;
  try {
    const r = await fetch(`/models/${m.name}/generate/stream`, {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: abort.signal,
      body: JSON.stringify({ prompt: $("prompt").value, max_new_tokens: Number($("max-tokens").value),
                             temperature: Number($("temperature").value), probe: true }) });
    if (!r.ok) throw new Error((await r.json()).error);
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(e.message);
  } finally {
    $("generate").disabled = false; $("stop").disabled = true;
  }
}

function handleEvent(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  const payload = data ? JSON.parse(data) : {};
  if (event === "token") {
    $("output").textContent += payload.text;
    if (payload.hidden) { columns.push(payload); drawHeat(); }
  } else if (event === "done") {
    $("output").dataset.done = "1";
  } else if (event === "error") {
    showError(payload.error);
  }
}

function diverging(v) {  // -1 blue, 0 white, +1 red
  const t = Math.max(-1, Math.min(1, v));
  const a = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? `rgb(255,${a},${a})` : `rgb(${a},${a},255)`;
}
function grey(v) { const a = Math.round(255 * (1 - Math.max(0, Math.min(1, v)))); return `rgb(${a},${a},${a})`; }

function drawHeat() {
  const canvas = $("heat"), ctx = canvas.getContext("2d");
  const cell = 8, label = 60;
  if (!columns.length) { canvas.width = 10; canvas.height = 10; return; }
  const gates = Object.keys(columns[0].gates || {});
  const rows = [{ name: "hidden", values: (c) => c.hidden, colour: diverging }]
    .concat(gates.map((g) => ({ name: g, values: (c) => c.gates[g], colour: grey })));
  const units = columns[0].hidden.length;
  canvas.width = label + columns.length * cell;
  canvas.height = 14 + rows.length * (units * cell + 6);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = "10px monospace"; ctx.fillStyle = "#333";
  columns.forEach((c, x) => ctx.fillText(c.text === "\n" ? "↵" : c.text, label + x * cell, 10));
  let y0 = 14;
  for (const row of rows) {
    ctx.fillStyle = "#333"; ctx.fillText(row.name, 2, y0 + 10);
    columns.forEach((c, x) => row.values(c).forEach((v, u) => {
      ctx.fillStyle = row.colour(v); ctx.fillRect(label + x * cell, y0 + u * cell, cell, cell);
    }));
    y0 += units * cell + 6;
  }
}

// --- classify, tag, translate, predict ------------------------------------------------------------------
async function classify() {
  showError("");
  try {
    const out = (await postJSON(`/models/${current().name}/classify`, { text: $("classify-text").value })).outputs[0];
    $("bars").innerHTML = Object.entries(out.probabilities).map(([label, p]) =>
      `<div class="bar${label === out.label ? " top" : ""}"><span class="label">${escape(label)}</span>` +
      `<span class="fill" style="width:${Math.round(p * 300)}px"></span><span>${p.toFixed(3)}</span></div>`).join("");
  } catch (e) { showError(e.message); }
}

const palette = ["#f4a261", "#8ecae6", "#b5e48c", "#e5989b", "#cdb4db", "#ffd166"];
async function tag() {
  showError("");
  try {
    const out = (await postJSON(`/models/${current().name}/tag`, { text: $("tag-text").value })).outputs[0];
    const types = [...new Set(out.tags.map((t) => t.replace(/^[BIES]-/, "")).filter((t) => t !== "O"))];
    $("spans").innerHTML = out.tokens.map((tok, i) => {
      const type = out.tags[i].replace(/^[BIES]-/, "");
      const colour = type === "O" ? "transparent" : palette[types.indexOf(type) % palette.length];
      return `<span class="token" style="background:${colour}">${escape(tok)}` +
             (type === "O" ? "" : `<sub>${escape(out.tags[i])}</sub>`) + "</span>";
    }).join(" ");
  } catch (e) { showError(e.message); }
}

async function translate() {
  showError("");
  try {
    const out = (await postJSON(`/models/${current().name}/translate`, { text: $("translate-text").value })).outputs[0];
    $("translation").textContent = out.translation;
    drawAttention(out);
  } catch (e) { showError(e.message); }
}

function drawAttention(out) {
  const canvas = $("attention"), ctx = canvas.getContext("2d");
  if (!out.attention) { canvas.width = 10; canvas.height = 10; return; }
  const cell = 22, left = 40, top = 30;
  const S = out.source_units.length, T = out.target_units.length;
  canvas.width = left + S * cell + 10; canvas.height = top + T * cell + 10;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = "12px monospace"; ctx.fillStyle = "#333";
  out.source_units.forEach((u, s) => ctx.fillText(u === " " ? "␣" : u, left + s * cell + 6, top - 8));
  out.target_units.forEach((u, t) => ctx.fillText(u, 4, top + t * cell + 15));
  const top1 = Math.max(...out.attention.flat(), 1e-6);  // scaled to the largest weight: darkest = most attention
  out.attention.forEach((row, t) => row.forEach((w, s) => {
    ctx.fillStyle = grey(w / top1); ctx.fillRect(left + s * cell, top + t * cell, cell - 1, cell - 1);
  }));
}

async function predict() {
  showError("");
  try {
    const out = await postJSON(`/models/${current().name}/predict`, { inputs: [$("predict-text").value] });
    $("predict-output").textContent = JSON.stringify(out.outputs, null, 2);
  } catch (e) { showError(e.message); }
}

function escape(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

$("model").addEventListener("change", choose);
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => abort && abort.abort());
$("classify").addEventListener("click", classify);
$("tag").addEventListener("click", tag);
$("translate").addEventListener("click", translate);
$("predict").addEventListener("click", predict);
loadModels().catch((e) => showError(e.message));
