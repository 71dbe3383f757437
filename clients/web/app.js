// instrumentd live page: server-sent events from /events -> one card per stream.
// Times on the page are wall-clock (the browser's local time); a stream's segment times (seconds of
// stream time) are placed with the offset between its newest window's wall_time and t_end.
"use strict";

const LEVEL_FLOOR_DB = -60;  // dBFS at the left end of the level bar
const LABEL_WIDTH = 118;  // px left of the heat map and timeline for row names
const AXIS_HEIGHT = 20;  // px under the timeline for the time axis
const MAX_SEGMENT_ITEMS = 8;  // newest segments listed as text under the timeline

let classes = [];
let names = {};
let historyS = 300;
let status = null;
const streams = new Map();  // name -> {windows: [], segments: Map, card, latest}

function epoch(wallTime) { return Date.parse(wallTime) / 1000; }

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit",
                                                         hour12: false});
}

// a perceptual dark-blue -> teal -> yellow ramp for probabilities 0..1
const RAMP = [[20, 22, 26], [33, 55, 110], [32, 130, 140], [90, 190, 100], [250, 230, 60]];
function heatColour(p) {
  const x = Math.min(1, Math.max(0, p)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const c = RAMP[i].map((v, k) => Math.round(v + f * (RAMP[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function segmentColour(cls) {
  const hue = (classes.indexOf(cls) * 360 / Math.max(1, classes.length) + 200) % 360;
  return `hsl(${hue}, 55%, 45%)`;
}

function streamOf(name) {
  let s = streams.get(name);
  if (s) return s;
  const card = document.getElementById("stream-template").content.firstElementChild.cloneNode(true);
  card.dataset.stream = name;
  card.querySelector(".name").textContent = name;
  s = {name, windows: [], segments: new Map(), card, offset: null};
  streams.set(name, s);
  const main = document.getElementById("streams");
  const after = [...streams.keys()].sort().indexOf(name);
  const cards = main.querySelectorAll(".stream");
  main.insertBefore(card, cards[after] || null);
  document.getElementById("empty").hidden = true;
  return s;
}

function addWindow(e) {
  const s = streamOf(e.stream);
  s.windows.push(e);
  s.offset = epoch(e.wall_time) - e.t_end;
  const newest = epoch(e.wall_time);
  while (s.windows.length && newest - epoch(s.windows[0].wall_time) > historyS) s.windows.shift();
  s.card.dataset.windows = s.windows.length;
}

function addSegment(e) {
  const s = streamOf(e.stream);
  const key = `${e.instrument}@${e.start}`;
  const seg = s.segments.get(key) || {instrument: e.instrument, start: e.start, end: null, reason: null};
  if (e.state === "end") { seg.end = e.end; seg.reason = e.reason; }
  s.segments.set(key, seg);
  s.card.dataset.segments = s.segments.size;
}

function showNow(s) {
  const w = s.windows[s.windows.length - 1];
  const inst = s.card.querySelector(".instrument");
  const conf = s.card.querySelector(".confidence");
  const top = s.card.querySelector(".top");
  if (!w) return;
  if (w.labels.length) {
    inst.textContent = w.labels.map(c => names[c] || c).join(" + ");
    inst.classList.remove("none");
    conf.textContent = `${Math.round(100 * Math.max(...w.labels.map(c => w.probabilities[c])))} %`;
  } else {
    inst.textContent = w.none ? `no instrument: ${w.none}` : "no predominant instrument";
    inst.classList.add("none");
    conf.textContent = "";
  }
  top.textContent = `top ${names[w.top] || w.top} ${Math.round(100 * w.probabilities[w.top])} % · ${w.latency_ms} ms`;
}

function showHealth(s) {
  const h = status && status.streams[s.name];
  if (!h) return;
  const state = s.card.querySelector(".state");
  state.textContent = h.state;
  state.className = `state ${h.state}`;
  const level = h.level_db;
  const fill = level === null ? 0 : Math.max(0, Math.min(1, (level - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB));
  s.card.querySelector(".level-fill").style.width = `${Math.round(fill * 100)}%`;
  s.card.querySelector(".level-text").textContent = level === null ? "no audio yet" : `${level.toFixed(1)} dBFS`;
}

// the canvas's pixels follow its CSS width and data-height at the screen's pixel ratio; drawing is in CSS px
function sizeCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = Number(canvas.dataset.height);
  canvas.style.height = `${height}px`;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return [ctx, width, height];
}

function drawHeat(s, now) {
  const canvas = s.card.querySelector(".heat");
  const [ctx, width, height] = sizeCanvas(canvas);
  const rowH = height / classes.length;
  const plotW = width - LABEL_WIDTH;
  const x = t => LABEL_WIDTH + plotW * (1 - (now - t) / historyS);
  ctx.fillStyle = heatColour(0);
  ctx.fillRect(LABEL_WIDTH, 0, plotW, height);
  for (let i = 0; i < s.windows.length; i++) {
    const w = s.windows[i];
    const end = epoch(w.wall_time);
    const prev = i > 0 ? epoch(s.windows[i - 1].wall_time) : end - (w.t_end - w.t_start) / 3;
    const x0 = x(Math.max(prev, end - 5)), x1 = x(end);
    if (x1 < LABEL_WIDTH) continue;
    classes.forEach((c, r) => {
      ctx.fillStyle = heatColour(w.probabilities[c]);
      ctx.fillRect(Math.max(LABEL_WIDTH, x0), r * rowH, Math.max(1, x1 - x0 + 0.5), rowH - 1);
    });
  }
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  ctx.fillStyle = "#c9ced6";
  classes.forEach((c, r) => ctx.fillText(names[c] || c, 4, (r + 0.5) * rowH));
}

function drawTimeline(s, now) {
  const canvas = s.card.querySelector(".timeline");
  const segs = [...s.segments.values()];
  const rows = classes.filter(c => segs.some(g => g.instrument === c));
  const rowH = 24;
  canvas.dataset.height = Math.max(2, rows.length) * rowH + AXIS_HEIGHT;  // one row per instrument heard
  const [ctx, width, height] = sizeCanvas(canvas);
  const plotW = width - LABEL_WIDTH;
  const x = t => LABEL_WIDTH + plotW * (1 - (now - t) / historyS);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  if (s.offset !== null) {
    for (const g of segs) {
      const r = rows.indexOf(g.instrument);
      const start = g.start + s.offset;
      const end = g.end === null ? now : g.end + s.offset;
      if (end < now - historyS) continue;
      const x0 = Math.max(LABEL_WIDTH, x(start)), x1 = Math.max(x0 + 2, x(end));
      ctx.fillStyle = segmentColour(g.instrument);
      ctx.fillRect(x0, r * rowH + 2, x1 - x0, rowH - 4);
      const label = names[g.instrument] || g.instrument;
      if (x1 - x0 > ctx.measureText(label).width + 8) {
        ctx.fillStyle = "#fff";
        ctx.fillText(label, x0 + 4, (r + 0.5) * rowH);
      }
    }
  }
  ctx.fillStyle = "#c9ced6";
  rows.forEach((c, r) => ctx.fillText(names[c] || c, 4, (r + 0.5) * rowH));
  // time axis: a tick every 30 s (every 60 s past 10 minutes of history), labelled hh:mm:ss
  const step = historyS > 600 ? 60 : historyS > 120 ? 30 : 10;
  const axisY = height - AXIS_HEIGHT;
  ctx.strokeStyle = "#4a505b";
  ctx.beginPath();
  ctx.moveTo(LABEL_WIDTH, axisY + 0.5);
  ctx.lineTo(width, axisY + 0.5);
  ctx.stroke();
  ctx.textBaseline = "top";
  ctx.fillStyle = "#9aa0ab";
  for (let t = Math.ceil((now - historyS) / step) * step; t <= now; t += step) {
    const tx = x(t);
    ctx.beginPath();
    ctx.moveTo(tx + 0.5, axisY);
    ctx.lineTo(tx + 0.5, axisY + 4);
    ctx.stroke();
    const label = clock(t);
    const w = ctx.measureText(label).width;
    if (tx - w / 2 > LABEL_WIDTH && tx + w / 2 < width) ctx.fillText(label, tx - w / 2, axisY + 6);
  }
}

function listSegments(s) {
  const list = s.card.querySelector(".segments");
  const segs = [...s.segments.values()].sort((a, b) => b.start - a.start).slice(0, MAX_SEGMENT_ITEMS);
  list.replaceChildren(...segs.map(g => {
    const li = document.createElement("li");
    const b = document.createElement("b");
    b.textContent = names[g.instrument] || g.instrument;
    const when = s.offset === null ? "" : ` ${clock(g.start + s.offset)}–${g.end === null ? "now" : clock(g.end + s.offset)}`;
    li.append(b, when);
    return li;
  }));
}

let pending = false;
function redraw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const now = Date.now() / 1000;
    for (const s of streams.values()) {
      showNow(s);
      showHealth(s);
      drawHeat(s, now);
      drawTimeline(s, now);
      listSegments(s);
    }
    if (status) document.getElementById("daemon").textContent = `${status.device} · ${status.model}`;
  });
}

function take(e) {
  if (e.type === "window") addWindow(e);
  else if (e.type === "segment") addSegment(e);
  else if (e.type === "status") status = e;
}

function snapshot(data) {
  historyS = data.history_s;
  for (const s of streams.values()) s.card.remove();
  streams.clear();
  if (data.status) status = data.status;
  Object.values(data.windows).forEach(ws => ws.forEach(addWindow));
  Object.values(data.segments).forEach(gs => gs.forEach(addSegment));
  if (status) Object.keys(status.streams).forEach(streamOf);
  redraw();
}

async function start() {
  const info = await (await fetch("/classes.json")).json();
  classes = info.classes;
  names = info.names;
  const connection = document.getElementById("connection");
  const source = new EventSource("/events");
  source.onopen = () => { connection.textContent = "live"; connection.classList.add("live"); };
  source.onerror = () => { connection.textContent = "reconnecting…"; connection.classList.remove("live"); };
  source.addEventListener("snapshot", m => snapshot(JSON.parse(m.data)));
  for (const kind of ["window", "segment", "status"]) {
    source.addEventListener(kind, m => {
      const e = JSON.parse(m.data);
      take(e);
      if (kind === "status") Object.keys(e.streams).forEach(streamOf);
      redraw();
    });
  }
  setInterval(redraw, 1000);  // the time axis moves on between events
  window.addEventListener("resize", redraw);
}

start();
