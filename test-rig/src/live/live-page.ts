/**
 * The live page: plain HTML, CSS and JavaScript, no build step. It follows /events: a `run` event
 * gives the testbed's shape (boards, groups, budgets, the static schedule's slots), data events
 * each board's phase and running step (a bar growing against the step's budget), each host, the
 * client load and the fail-safe state with its cause; the period is drawn as the paper's Figure 3
 * (each group's slot and deadline, each step's bar as it runs). A `report` event turns the page
 * into the run's report: its promises, timings, timeline and files. Everything an event carries
 * is written as text (textContent), never as markup: a host's console is hostile.
 */
export const LIVE_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>smw live</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 .5rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  h2 { font-size: 1rem; margin: 1rem 0 .3rem; }
  #conn, #delay { font-size: .85rem; color: #666; }
  #failsafe { display: none; background: #b71c1c; color: #fff; padding: .5rem; margin: .5rem 0; font-weight: bold; }
  #failsafe.on { display: block; }
  table { border-collapse: collapse; margin: .3rem 0; }
  td, th { padding: .2rem .6rem; text-align: left; border-bottom: 1px solid #eee; }
  td.num, th.num { text-align: right; }
  .track { position: relative; width: 320px; height: 14px; background: #f1f1f1; }
  .lane { position: relative; width: 640px; height: 16px; background: #fafafa; }
  .slot { position: absolute; top: 0; height: 16px; background: #e3f2fd; }
  .deadline { position: absolute; top: -2px; height: 20px; width: 2px; background: #c62828; }
  .td-mark { position: absolute; top: -2px; height: 20px; width: 1px; background: #555; }
  .now { position: absolute; top: -2px; height: 20px; width: 1px; background: #222; }
  .bar { position: absolute; top: 1px; height: 14px; background: #1565c0; }
  .track .bar { top: 0; }
  .bar.done { background: #2e7d32; }
  .bar.over { background: #c62828; }
  .phase-failsafe { color: #b71c1c; font-weight: bold; }
  .host-reset { color: #6d4c41; }
  .fault { color: #b71c1c; }
  .axis { font-size: .75rem; color: #666; }
  #log { font: 12px ui-monospace, monospace; max-height: 14rem; overflow: auto; background: #fafafa; padding: .4rem; }
  /* First under the title, above everything that grows or appears while a run goes on, so that a
     button never moves under the pointer: a click meant for one fault must not land on another. */
  #faults button { margin: .1rem; }
  #answer { font: 12px ui-monospace, monospace; }
  #report { border-top: 3px solid #1565c0; margin-top: 1rem; }
  #promises li.held::marker { content: "held  "; color: #2e7d32; }
  #promises li.broken::marker { content: "BROKEN  "; color: #b71c1c; font-weight: bold; }
  #timeline-svg { max-width: 100%; border: 1px solid #eee; }
</style>
</head>
<body>
<h1>smw live: <span id="title">waiting for a run</span> <span id="conn">connecting</span> <span id="delay"></span></h1>
<div id="faults" hidden><h2>faults</h2><div id="fault-buttons"></div><div id="answer"></div></div>
<div id="failsafe"></div>
<section id="report" hidden>
  <h2>report: <span id="report-title"></span></h2>
  <ul id="promises"></ul>
  <div id="report-lines"></div>
  <table id="stats"><thead><tr><th>step</th><th class="num">n</th><th class="num">min</th><th class="num">median</th><th class="num">p99</th><th class="num">max</th><th class="num">budget</th></tr></thead><tbody></tbody></table>
  <img id="timeline-svg" alt="the run's timeline" hidden>
  <div>files: <span id="files"></span></div>
</section>
<div>period <span id="period">–</span> · clients <span id="load">–</span></div>
<table id="boards"><thead><tr><th>board</th><th>host</th><th>phase</th><th>step</th><th>progress against its budget</th><th>host state</th><th>fault</th></tr></thead><tbody></tbody></table>
<h2>the current period (Figure 3: each group's slot in blue, its deadline in red, T_d as a grey line)</h2>
<table id="timeline"><tbody></tbody></table>
<h2>events</h2>
<div id="log"></div>
<script>
"use strict";
const BUDGET_OF = { shutdown: "tShutdownMs", checkOS: "tCheckcodeMs", checkSM: "tCheckcodeMs", restoreOS: "tRestorecodeMs", restoreSM: "tRestorecodeMs", boot: "tBootMs", transfer: "tTransferMs" };
const HOST_IN_STEP = { shutdown: "shutting down", checkOS: "held in reset", checkSM: "held in reset", restoreOS: "held in reset", restoreSM: "held in reset", boot: "booting", transfer: "recovering its state" };
const LANE_PX = 640;
const boards = new Map();
let shape;
let nowAtMs = 0;
let periodAtMs;
let caughtUp = false;
let worstDelayMs = 0;
const $ = (id) => document.getElementById(id);
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
function budgetMs(step) { return shape.budgets[BUDGET_OF[step]] ?? 1000; }
function msText(ms) { return ms >= 10000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms) + " ms"; }
function groupOf(host) { return shape.groups.findIndex((g) => g.includes(host)); }
function div(cls, leftPx, widthPx, title) {
  const d = document.createElement("div");
  d.className = cls;
  d.style.left = leftPx + "px";
  if (widthPx !== undefined) d.style.width = Math.max(2, widthPx) + "px";
  if (title) d.title = title;
  return d;
}
function log(text) {
  const line = document.createElement("div");
  line.textContent = text;
  $("log").prepend(line);
  while ($("log").childNodes.length > 200) $("log").lastChild.remove();
}
function render() {
  if (!shape) return;
  const body = $("boards").tBodies[0];
  body.replaceChildren();
  for (const b of boards.values()) {
    const row = body.insertRow();
    row.dataset.board = b.id;
    cell(row, b.id);
    cell(row, b.host);
    cell(row, b.phase === "failsafe" ? "FAIL-SAFE: " + b.reason : b.phase, "phase-" + b.phase);
    cell(row, b.step ?? "");
    const track = document.createElement("div");
    track.className = "track";
    if (b.step) {
      const share = (nowAtMs - b.stepAtMs) / budgetMs(b.step);
      const bar = div("bar running" + (share > 1 ? " over" : ""), 0, Math.min(1, share) * 320);
      bar.dataset.step = b.step;
      track.append(bar);
    }
    row.insertCell().append(track);
    cell(row, b.hostState, b.hostState === "held in reset" ? "host-reset" : "");
    cell(row, b.fault ?? "", "fault");
  }
  drawPeriod();
}
// Figure 3: the period from its trigger, T_p wide; per board its group's slot and deadline,
// the steps it has done and the one it runs.
function drawPeriod() {
  const timeline = $("timeline").tBodies[0];
  timeline.replaceChildren();
  const spanMs = Math.max(1, shape.tPMs ?? 10000);
  const px = (ms) => (ms / spanMs) * LANE_PX;
  const axis = timeline.insertRow();
  cell(axis, "");
  const scale = document.createElement("div");
  scale.className = "axis";
  scale.textContent = "0 … T_d " + msText(shape.tDMs ?? 0) + " … T_p " + msText(spanMs);
  axis.insertCell().append(scale);
  for (const b of boards.values()) {
    const line = timeline.insertRow();
    line.dataset.board = b.id;
    cell(line, b.id);
    const lane = document.createElement("div");
    lane.className = "lane";
    const g = groupOf(b.host);
    if (g >= 0) {
      lane.append(div("slot", px(g * shape.slotMs), px(shape.slotMs), "group " + (g + 1) + "'s slot"));
      lane.append(div("deadline", px((g + 1) * shape.slotMs + shape.deadlineAfterSlotMs), undefined, "group " + (g + 1) + "'s deadline"));
    }
    lane.append(div("td-mark", px(shape.tDMs ?? 0), undefined, "T_d"));
    if (periodAtMs !== undefined) {
      for (const s of b.steps) {
        const bar = div("bar " + (s.verdict === "ok" || s.verdict === "skipped" ? "done" : "over"), px(s.startAtMs - periodAtMs), px(s.tookMs), s.step + " " + s.tookMs + " ms (" + s.verdict + ")");
        bar.dataset.step = s.step;
        lane.append(bar);
      }
      if (b.step) {
        const tookMs = nowAtMs - b.stepAtMs;
        const bar = div("bar running" + (tookMs > budgetMs(b.step) ? " over" : ""), px(b.stepAtMs - periodAtMs), px(tookMs), b.step + " running");
        bar.dataset.step = b.step;
        lane.append(bar);
      }
      lane.append(div("now", px(Math.min(spanMs, nowAtMs - periodAtMs))));
    }
    line.insertCell().append(lane);
  }
}
function onEvent(e) {
  nowAtMs = Math.max(nowAtMs, e.atMs);
  if (e.kind === "board") {
    const b = boards.get(e.board);
    if (!b) return;
    if (e.msg === "step started") {
      b.step = e.fields.step; b.stepAtMs = e.atMs; b.phase = "rejuvenating"; b.startedAtMs[b.step] = e.atMs;
      // What the step does to the host (paper 3.2); a reset line's event, when there is one, says it too.
      b.hostState = HOST_IN_STEP[b.step] ?? b.hostState;
    } else if (e.msg === "host rejuvenated" || e.msg === "rejuvenation cut short by fail-safe") {
      for (const s of e.fields.steps ?? []) b.steps.push({ step: s.step, tookMs: s.tookMs ?? 0, verdict: s.verdict, startAtMs: b.startedAtMs[s.step] ?? e.atMs - (s.tookMs ?? 0) });
      b.step = undefined;
      if (b.phase !== "failsafe") { b.phase = "running"; b.hostState = "up"; }
      if (b.fault && e.msg === "host rejuvenated") b.fault = "cleaned: " + b.fault;
    } else if (e.msg === "period triggered") {
      $("period").textContent = String(e.fields.period);
      periodAtMs = e.atMs;
      for (const x of boards.values()) { x.steps = []; x.startedAtMs = {}; }
    } else if (e.msg === "joining") {
      if (b.phase !== "failsafe") b.phase = "joining";
    } else if (e.msg === "stopping") {
      // No more certificates or leases; a running host runs until its last lease lapsed.
      if (b.phase !== "failsafe") b.phase = "stopping";
    } else if (e.msg === "stopped") {
      if (b.phase !== "failsafe") b.phase = "stopped";
      b.step = undefined;
    } else if (e.msg.startsWith("joined")) {
      if (b.phase !== "failsafe") b.phase = "running";
    } else if (e.msg === "FAIL-SAFE") {
      b.phase = "failsafe"; b.step = undefined; b.reason = e.fields.reason ?? "";
      $("failsafe").textContent = "FAIL-SAFE: " + (e.fields.reason ?? "") + " (from " + (e.fields.origin ?? e.board) + ")";
      $("failsafe").className = "on";
    }
  } else if (e.kind === "line" && e.role === "reset") {
    for (const b of boards.values()) if (b.host === e.host) b.hostState = e.level === "active" ? "held in reset" : "booting";
  } else if (e.kind === "host-up" || e.kind === "host-down" || e.kind === "host-boot-failed") {
    for (const b of boards.values()) if (b.host === e.host && !(e.kind === "host-up" && b.step === "transfer")) b.hostState = e.kind === "host-up" ? "up" : e.kind === "host-down" ? "down" : "boot failed";
  } else if (e.kind === "fault" && e.host) {
    for (const b of boards.values()) if (b.host === e.host) b.fault = e.detail;
  } else if (e.kind === "load") {
    const latency = e.p50Ms === undefined ? "latency –" : "latency p50 " + e.p50Ms.toFixed(1) + " ms, p99 " + e.p99Ms.toFixed(1) + " ms";
    $("load").textContent = e.opsPerSecond.toFixed(0) + " ops/s, " + latency + ", " + e.completed + " completed, " + e.failed + " unanswered";
  }
  if (caughtUp) {
    // Pushed how long after it happened (the rig and this browser share a clock on loopback).
    const delayMs = Date.now() - e.wallMs;
    worstDelayMs = Math.max(worstDelayMs, delayMs);
    $("delay").textContent = "pushed in " + delayMs + " ms (worst " + worstDelayMs + " ms)";
  }
  if (e.kind !== "board" || e.msg !== "period triggered") log((e.atMs / 1000).toFixed(1) + " s  " + describe(e));
}
function describe(e) {
  if (e.kind === "board") return e.board + ": " + e.msg + (e.fields.step ? " " + e.fields.step : "") + (e.fields.reason ? ": " + e.fields.reason : "");
  if (e.kind === "load") return "clients: " + e.completed + " completed, " + e.failed + " unanswered";
  return (e.host ?? e.board ?? "rig") + ": " + (e.detail ?? e.kind + (e.level ? " " + e.role + " " + e.level : ""));
}
function faultButtons() {
  $("fault-buttons").replaceChildren();
  $("answer").textContent = "";
  const names = Object.keys(shape.faults);
  $("faults").hidden = names.length === 0;
  for (const name of names) {
    const help = shape.faults[name];
    const targets = help.startsWith("--host") ? shape.boards.map((b) => ({ host: b.host })) : help.startsWith("--board") && !help.includes("--peer") ? shape.boards.map((b) => ({ board: b.id })) : help.startsWith("[") ? [{}] : [];
    for (const target of targets) {
      const button = document.createElement("button");
      button.textContent = name + " " + (target.host ?? target.board ?? "");
      button.dataset.fault = name;
      button.dataset.target = target.host ?? target.board ?? "";
      button.title = help;
      button.onclick = async () => {
        const reply = await fetch("/fault", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ fault: name, ...target }) });
        const answer = await reply.json();
        $("answer").textContent = answer.ok ? answer.detail : "refused: " + answer.error;
      };
      $("fault-buttons").append(button);
    }
  }
}
function startRun(next) {
  shape = next;
  $("conn").textContent = "live";
  $("title").textContent = shape.title + " on " + shape.name;
  document.title = "smw live: " + shape.title;
  boards.clear();
  for (const b of shape.boards) boards.set(b.id, { id: b.id, host: b.host, phase: "joining", hostState: "", steps: [], startedAtMs: {} });
  nowAtMs = 0; periodAtMs = undefined;
  $("period").textContent = "–"; $("load").textContent = "–";
  $("log").replaceChildren();
  $("failsafe").className = "";
  $("report").hidden = true;
  faultButtons();
  render();
}
function showReport(r) {
  $("report-title").textContent = r.title;
  const list = $("promises");
  list.replaceChildren();
  for (const p of r.promises) {
    const li = document.createElement("li");
    li.className = p.held ? "held" : "broken";
    li.textContent = p.name + ": " + p.detail;
    list.append(li);
  }
  $("report-lines").replaceChildren(...r.lines.map((text) => { const d = document.createElement("div"); d.textContent = text; return d; }));
  const stats = $("stats").tBodies[0];
  stats.replaceChildren();
  $("stats").hidden = r.stats.length === 0;
  for (const s of r.stats) {
    const row = stats.insertRow();
    cell(row, s.name);
    cell(row, String(s.count), "num");
    for (const v of [s.minMs, s.medianMs, s.p99Ms, s.maxMs, s.budgetMs]) cell(row, s.count === 0 && v !== s.budgetMs ? "-" : msText(v), "num");
  }
  const svg = $("timeline-svg");
  svg.hidden = !r.files.includes("timeline.svg");
  if (!svg.hidden) svg.src = "/report/timeline.svg?" + Date.now();
  $("files").replaceChildren(...r.files.map((name) => { const a = document.createElement("a"); a.href = "/report/" + name; a.textContent = name; a.style.marginRight = ".6rem"; return a; }));
  $("faults").hidden = true;
  // The rig is down: what each board was doing is over.
  for (const b of boards.values()) { b.step = undefined; if (b.phase !== "failsafe") b.phase = "stopped"; }
  $("report").hidden = false;
  render();
}
function main() {
  const source = new EventSource("/events");
  // The server starts each connection with the run and its events so far: a clean slate.
  source.onopen = () => { $("conn").textContent = "live"; caughtUp = false; };
  source.onerror = () => { $("conn").textContent = "reconnecting"; };
  source.addEventListener("run", (m) => startRun(JSON.parse(m.data)));
  source.addEventListener("caught-up", () => { caughtUp = true; });
  source.addEventListener("report", (m) => { $("conn").textContent = "run ended"; showReport(JSON.parse(m.data)); });
  // Drawn at most every 50 ms, however fast events come (a replay is thousands at once).
  let queued = false;
  source.onmessage = (m) => {
    if (!shape) return;
    onEvent(JSON.parse(m.data));
    if (queued) return;
    queued = true;
    setTimeout(() => { queued = false; render(); }, 50);
  };
  // Running bars grow between events.
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    if ($("report").hidden) nowAtMs += now - last;
    last = now;
    if ($("report").hidden) render();
  }, 200);
}
main();
</script>
</body>
</html>
`;
