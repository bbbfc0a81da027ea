/**
 * The live page: plain HTML, CSS and JavaScript, no build step. It draws the testbed from
 * /testbed.json and follows /events: each board's phase and running step (a bar growing against
 * the step's budget), each host, the period's steps as a timeline, the client load, the
 * fail-safe state with its cause, and the faults when the rig allows them. Everything an event
 * carries is written as text (textContent), never as markup: a host's console is hostile.
 */
export const LIVE_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>smw live</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 .5rem; }
  #conn { font-size: .85rem; color: #666; }
  #failsafe { display: none; background: #b71c1c; color: #fff; padding: .5rem; margin: .5rem 0; font-weight: bold; }
  #failsafe.on { display: block; }
  table { border-collapse: collapse; margin: .5rem 0; }
  td, th { padding: .2rem .6rem; text-align: left; border-bottom: 1px solid #eee; }
  .track { position: relative; width: 320px; height: 14px; background: #f1f1f1; }
  .bar { position: absolute; top: 0; height: 14px; background: #1565c0; }
  .bar.done { background: #2e7d32; }
  .bar.over { background: #c62828; }
  .phase-failsafe { color: #b71c1c; font-weight: bold; }
  .host-reset { color: #6d4c41; }
  #log { font: 12px ui-monospace, monospace; max-height: 14rem; overflow: auto; background: #fafafa; padding: .4rem; }
  #faults button { margin: .1rem; }
  #answer { font: 12px ui-monospace, monospace; }
</style>
</head>
<body>
<h1>smw live: <span id="name">…</span> <span id="conn">connecting</span></h1>
<div id="failsafe"></div>
<div>period <span id="period">–</span> · clients <span id="load">–</span></div>
<table id="boards"><thead><tr><th>board</th><th>host</th><th>phase</th><th>step</th><th>progress against its budget</th><th>host state</th></tr></thead><tbody></tbody></table>
<h2>timeline of the current period</h2>
<table id="timeline"><tbody></tbody></table>
<div id="faults" hidden><h2>faults</h2><div id="fault-buttons"></div><div id="answer"></div></div>
<h2>events</h2>
<div id="log"></div>
<script>
"use strict";
const BUDGET_OF = { shutdown: "tShutdownMs", checkOS: "tCheckcodeMs", checkSM: "tCheckcodeMs", restoreOS: "tRestorecodeMs", restoreSM: "tRestorecodeMs", boot: "tBootMs", transfer: "tTransferMs" };
const boards = new Map();
let shape;
let nowAtMs = 0;
const $ = (id) => document.getElementById(id);
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
function budgetMs(step) { return shape.budgets[BUDGET_OF[step]] ?? 1000; }
function log(text) {
  const line = document.createElement("div");
  line.textContent = text;
  $("log").prepend(line);
  while ($("log").childNodes.length > 200) $("log").lastChild.remove();
}
function render() {
  const body = $("boards").tBodies[0];
  body.replaceChildren();
  const timeline = $("timeline").tBodies[0];
  timeline.replaceChildren();
  for (const b of boards.values()) {
    const row = body.insertRow();
    row.dataset.board = b.id;
    cell(row, b.id);
    cell(row, b.host);
    cell(row, b.phase, "phase-" + b.phase);
    cell(row, b.step ?? "");
    const track = document.createElement("div");
    track.className = "track";
    if (b.step) {
      const bar = document.createElement("div");
      const share = Math.min(1, (nowAtMs - b.stepAtMs) / budgetMs(b.step));
      bar.className = "bar running";
      bar.dataset.step = b.step;
      bar.style.width = Math.max(2, share * 320) + "px";
      track.append(bar);
    }
    row.insertCell().append(track);
    cell(row, b.hostState, b.hostState === "held in reset" ? "host-reset" : "");
    const line = timeline.insertRow();
    cell(line, b.id);
    const lane = document.createElement("div");
    lane.className = "track";
    const span = Math.max(1, shape.tPMs ?? 10000);
    for (const s of b.steps) {
      const bar = document.createElement("div");
      bar.className = "bar " + (s.verdict === "ok" || s.verdict === "skipped" ? "done" : "over");
      bar.dataset.step = s.step;
      bar.title = s.step + " " + s.tookMs + " ms (" + s.verdict + ")";
      bar.style.left = ((s.startAtMs - b.periodAtMs) / span) * 320 + "px";
      bar.style.width = Math.max(2, (s.tookMs / span) * 320) + "px";
      lane.append(bar);
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
      b.step = e.fields.step; b.stepAtMs = e.atMs; b.phase = "rejuvenating";
    } else if (e.msg === "host rejuvenated" || e.msg === "rejuvenation cut short by fail-safe") {
      for (const s of e.fields.steps ?? []) b.steps.push({ step: s.step, tookMs: s.tookMs ?? 0, verdict: s.verdict, startAtMs: e.atMs - (s.tookMs ?? 0) });
      b.step = undefined;
      if (b.phase !== "failsafe") b.phase = "running";
    } else if (e.msg === "period triggered") {
      $("period").textContent = String(e.fields.period);
      for (const x of boards.values()) { x.steps = []; x.periodAtMs = e.atMs; }
    } else if (e.msg.startsWith("joined")) {
      b.phase = "running";
    } else if (e.msg === "FAIL-SAFE") {
      b.phase = "failsafe"; b.step = undefined;
      $("failsafe").textContent = "FAIL-SAFE: " + (e.fields.reason ?? "") + " (from " + (e.fields.origin ?? e.board) + ")";
      $("failsafe").className = "on";
    }
  } else if (e.kind === "line" && e.role === "reset") {
    for (const b of boards.values()) if (b.host === e.host) b.hostState = e.level === "active" ? "held in reset" : "released";
  } else if (e.kind === "host-up" || e.kind === "host-down" || e.kind === "host-boot-failed") {
    for (const b of boards.values()) if (b.host === e.host) b.hostState = e.kind === "host-up" ? "up" : e.kind === "host-down" ? "down" : "boot failed";
  } else if (e.kind === "load") {
    $("load").textContent = e.opsPerSecond.toFixed(0) + " ops/s, " + e.completed + " completed, " + e.failed + " failed";
  }
  if (e.kind !== "board" || e.msg !== "period triggered") log((e.atMs / 1000).toFixed(1) + " s  " + describe(e));
}
function describe(e) {
  if (e.kind === "board") return e.board + ": " + e.msg + (e.fields.step ? " " + e.fields.step : "");
  if (e.kind === "load") return "clients: " + e.completed + " completed, " + e.failed + " failed";
  return (e.host ?? e.board ?? "rig") + ": " + (e.detail ?? e.kind + (e.level ? " " + e.role + " " + e.level : ""));
}
function faultButtons() {
  const names = Object.keys(shape.faults);
  if (names.length === 0) return;
  $("faults").hidden = false;
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
async function main() {
  shape = await (await fetch("/testbed.json")).json();
  $("name").textContent = shape.name;
  for (const b of shape.boards) boards.set(b.id, { id: b.id, host: b.host, phase: "joining", hostState: "", steps: [], periodAtMs: 0 });
  faultButtons();
  render();
  const source = new EventSource("/events");
  // The server replays every event on each connection: a reconnect starts from a clean slate.
  source.onopen = () => {
    $("conn").textContent = "live";
    for (const b of boards.values()) Object.assign(b, { phase: "joining", hostState: "", steps: [], step: undefined, periodAtMs: 0 });
    $("log").replaceChildren();
    $("failsafe").className = "";
  };
  source.onerror = () => { $("conn").textContent = "reconnecting"; };
  // Drawn at most every 50 ms, however fast events come (a replay is thousands at once).
  let queued = false;
  source.onmessage = (m) => {
    onEvent(JSON.parse(m.data));
    if (queued) return;
    queued = true;
    setTimeout(() => { queued = false; render(); }, 50);
  };
  // Running bars grow between events.
  let last = performance.now();
  setInterval(() => { const now = performance.now(); nowAtMs += now - last; last = now; render(); }, 200);
}
main();
</script>
</body>
</html>
`;
