// dloop serve: the page's script. Plain DOM, no framework, no build step.
//
// Safety rule of this file: data from the server (run ids, state names, output, messages) is
// attacker-controlled. It reaches the page only as textContent or as attribute values set with
// setAttribute on attributes that cannot run code (class, data-*, x/y, href built from
// encodeURIComponent of a run id). Never as markup: no HTML parsing of anything.
"use strict";

// Steps the page asks for at a time (the server sends the newest 500 first).
const STEP_PAGE = 500;
const CSRF = document.querySelector('meta[name="dloop-csrf"]').content;
const CONTROL = document.querySelector('meta[name="dloop-control"]').content === "on";
const main = document.getElementById("main");
const conn = document.getElementById("conn");

// ---------- small helpers ----------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + "ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  const h = Math.floor(m / 60);
  return h + "h" + String(m % 60).padStart(2, "0") + "m";
}

function cost(usd) {
  return usd ? "$" + Number(usd).toFixed(2) : "-";
}

function tokens(inp, out) {
  return inp || out ? inp + " / " + out : "-";
}

// A live run's clock runs on from the row's elapsed_ms, counted from when the row arrived.
function elapsed(row) {
  if (row.live && row._received) return row.elapsed_ms + (Date.now() - row._received);
  return row.elapsed_ms;
}

function runHref(id) {
  return "/runs/" + encodeURIComponent(id);
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function control(id, action) {
  const response = await fetch("/api/runs/" + encodeURIComponent(id) + "/" + action, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-Dloop-Csrf": CSRF },
  });
  const body = await response.json();
  return body.message || body.error || (response.ok ? "done" : "refused");
}

function connect(url, handlers) {
  const source = new EventSource(url);
  source.onopen = () => { conn.textContent = "live"; conn.className = "conn on"; };
  source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn off"; };
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handler(JSON.parse(event.data)));
  }
  return source;
}

// ---------- the runs list ----------

const GROUPS = [
  ["live", "Live"],
  ["waiting", "Waiting"],
  ["paused", "Paused (resumable)"],
  ["finished", "Finished"],
];

function listPage() {
  const rows = new Map();
  const put = (row) => { row._received = Date.now(); rows.set(row.id, row); };
  const draw = () => {
    const sorted = [...rows.values()].sort((a, b) =>
      a.started_at === b.started_at ? (a.id < b.id ? 1 : -1) : (a.started_at < b.started_at ? 1 : -1));
    const parts = [];
    if (sorted.length === 0) {
      parts.push(el("p", { class: "muted" }, "No runs yet: start one with `dloop run LOOP`."));
    }
    for (const [group, title] of GROUPS) {
      const members = sorted.filter((r) => r.group === group);
      if (members.length === 0) continue;
      parts.push(el("h2", {}, title + " ", el("span", { class: "count" }, "(" + members.length + ")")));
      const table = el("table", { "data-group": group },
        el("thead", {}, el("tr", {},
          el("th", {}, "Loop"), el("th", {}, "Status"), el("th", {}, "State"),
          el("th", { class: "num" }, "Step"), el("th", { class: "num" }, "Elapsed"),
          el("th", { class: "num" }, "Cost"), el("th", {}, "Run"))));
      const body = el("tbody");
      for (const r of members) {
        const tr = el("tr", { class: "clickable", "data-run-id": r.id },
          el("td", {}, r.loop),
          el("td", { class: "status-" + r.status }, r.label),
          el("td", {}, r.state || ""),
          el("td", { class: "num" }, r.step),
          el("td", { class: "num elapsed" }, duration(elapsed(r))),
          el("td", { class: "num" }, cost(r.cost_usd)),
          el("td", { class: "id" }, el("a", { href: runHref(r.id) }, r.id)));
        tr.addEventListener("click", (event) => {
          if (event.target.tagName !== "A") location.href = runHref(r.id);
        });
        body.append(tr);
      }
      table.append(body);
      parts.push(table);
    }
    main.replaceChildren(...parts);
  };
  connect("/api/events", {
    runs: (list) => { rows.clear(); list.forEach(put); draw(); },
    run: (row) => { put(row); draw(); },
    removed: ({ id }) => { rows.delete(id); draw(); },
  });
  // Live clocks tick between updates.
  setInterval(() => {
    for (const tr of main.querySelectorAll("tr[data-run-id]")) {
      const row = rows.get(tr.getAttribute("data-run-id"));
      if (row && row.live) tr.querySelector(".elapsed").textContent = duration(elapsed(row));
    }
  }, 1000);
}

// ---------- one run ----------

function runPage(id) {
  document.getElementById("crumb").textContent = id;
  document.title = id + " · dloop";
  let row = null;
  let steps = [];
  // Steps before steps[0] that are not on the page: a run of thousands of steps sends its
  // newest only (the server's window), and a live one's oldest rows are let go as new come.
  let earlier = 0;
  // The whole path (states visited, "from\0to" moves), for the diagram, whatever the window.
  let path = { visited: new Set(), taken: new Set() };
  let graph = null;
  let selected = null; // the step whose output shows
  let outputTimer = null;

  const summary = el("div", { class: "summary", id: "summary" });
  const buttons = el("div", { class: "buttons" });
  const message = el("div", { class: "message muted", id: "message" });
  const diagram = el("div", { class: "diagram", id: "diagram" });
  const timeline = el("tbody", { id: "steps" });
  const outputTitle = el("h2", {}, "Output");
  const outputPre = el("pre", { class: "output", id: "output" });
  const outputMore = el("button", { type: "button", id: "more" }, "Load more");
  outputMore.hidden = true;
  main.replaceChildren(
    summary, buttons, message,
    el("h2", {}, "States"), diagram,
    el("h2", {}, "Timeline"),
    el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { class: "num" }, "Step"), el("th", {}, "State"), el("th", {}, "Status"),
        el("th", { class: "num" }, "Duration"), el("th", {}, "Verdict"),
        el("th", { class: "num" }, "Exit"), el("th", { class: "num" }, "Tokens in/out"),
        el("th", { class: "num" }, "Cost"), el("th", {}, "Next"))),
      timeline),
    outputTitle, outputPre, outputMore);

  const drawSummary = () => {
    if (!row) return;
    const item = (label, value, cls) => el("div", {}, el("span", {}, label), el("b", { class: cls || null }, value));
    summary.replaceChildren(
      item("Loop", row.loop),
      item("Status", row.label, "status-" + row.status),
      item("State", row.state || "-"),
      item("Step", row.step),
      item("Elapsed", duration(elapsed(row))),
      item("Tokens in/out", tokens(row.tokens_in, row.tokens_out)),
      item("Cost", cost(row.cost_usd)));
    if (row.reason) summary.append(item("Reason", row.reason));
    buttons.replaceChildren();
    if (CONTROL) {
      const stop = el("button", { type: "button", id: "stop" }, "Stop");
      stop.disabled = !row.live;
      const resume = el("button", { type: "button", id: "resume" }, "Resume");
      resume.disabled = !row.resumable;
      const act = (action) => async () => {
        stop.disabled = resume.disabled = true;
        message.textContent = action + "…";
        try { message.textContent = await control(id, action); }
        catch (e) { message.textContent = String(e); }
      };
      stop.addEventListener("click", act("stop"));
      resume.addEventListener("click", act("resume"));
      buttons.append(stop, resume);
    }
  };

  // A running step's time counts on from its start (the browser's clock, never below 0).
  const stepDuration = (s) => {
    if (s.duration_ms !== null) return duration(s.duration_ms);
    if (s.status !== "running") return "";
    return duration(Math.max(0, Date.now() - Date.parse(s.started_at))) + " …";
  };

  const loadEarlier = async () => {
    const url = "/api/runs/" + encodeURIComponent(id) + "/steps?before=" + earlier + "&limit=" + STEP_PAGE;
    try {
      const page = await getJson(url);
      steps = page.steps.concat(steps);
      earlier = page.earlier;
      drawSteps();
    } catch (e) { message.textContent = String(e.message || e); }
  };

  const drawSteps = () => {
    const trs = steps.map((s) => {
      const tr = el("tr", {
        class: "clickable" + (selected === s.step && s.has_output ? " selected" : ""),
        "data-step": s.step, "data-state": s.state, "data-status": s.status,
      },
        el("td", { class: "num" }, s.step),
        el("td", {}, s.state),
        el("td", { class: "status-" + s.status }, s.status),
        el("td", { class: "num step-duration" }, stepDuration(s)),
        el("td", {}, s.verdict || ""),
        el("td", { class: "num" }, s.exit_code === null ? "" : s.exit_code),
        el("td", { class: "num" }, tokens(s.tokens_in, s.tokens_out)),
        el("td", { class: "num" }, s.cost_usd === null ? "-" : cost(s.cost_usd)),
        el("td", {}, s.next || ""));
      tr.addEventListener("click", () => showOutput(s.step));
      return tr;
    });
    if (earlier > 0) {
      const more = el("button", { type: "button", id: "earlier" },
        earlier + " earlier steps: show " + Math.min(earlier, STEP_PAGE) + " more");
      more.addEventListener("click", loadEarlier);
      trs.unshift(el("tr", { class: "earlier" }, el("td", { colspan: 9 }, more)));
    }
    timeline.replaceChildren(...trs);
    drawDiagram();
  };

  const latestWithOutput = () => {
    const last = [...steps].reverse().find((s) => s.has_output);
    return last ? last.step : null;
  };

  const drawDiagram = () => {
    if (!graph) return;
    diagram.replaceChildren(drawGraph(graph, steps, path, row && row.state, row && row.live));
  };

  // Output: fetched in bounded slices; a running step's is followed until it ends.
  let outputOffset = 0;
  const fetchOutput = async (step) => {
    const url = "/api/runs/" + encodeURIComponent(id) + "/output/" + step + "?offset=" + outputOffset;
    try {
      const slice = await getJson(url);
      if (selected !== step) return;
      outputPre.append(document.createTextNode(slice.text));
      outputOffset = slice.next_offset;
      clearTimeout(outputTimer);
      if (slice.status === "open" && !(row && !row.live)) {
        // Still running (a dead runner's last step stays "open": not followed): look again.
        outputMore.hidden = true;
        outputTimer = setTimeout(() => fetchOutput(step), 1000);
      } else {
        outputMore.hidden = slice.complete || slice.text.length === 0;
      }
    } catch (e) {
      if (selected === step) outputPre.textContent = "(" + e.message + ")";
    }
  };
  outputMore.addEventListener("click", () => selected !== null && fetchOutput(selected));
  const showOutput = (step) => {
    selected = step;
    outputOffset = 0;
    clearTimeout(outputTimer);
    const s = steps.find((x) => x.step === step && x.has_output);
    outputTitle.textContent = "Output of step " + step + (s ? " (" + s.state + ")" : "");
    outputPre.textContent = "";
    outputMore.hidden = true;
    for (const tr of timeline.children) {
      // A terminal state shares its step's number but has no output: only the action's row.
      const row = steps.find((x) => String(x.step) === tr.getAttribute("data-step")
        && x.state === tr.getAttribute("data-state"));
      tr.classList.toggle("selected", tr.getAttribute("data-step") === String(step) && !!row && row.has_output);
    }
    fetchOutput(step);
  };

  getJson("/api/runs/" + encodeURIComponent(id) + "/graph")
    .then((g) => { graph = g; drawDiagram(); })
    .catch((e) => { diagram.textContent = "(" + e.message + ")"; });

  connect("/api/events?run=" + encodeURIComponent(id), {
    runs: (list) => {
      const mine = list.find((r) => r.id === id);
      if (mine) { mine._received = Date.now(); row = mine; drawSummary(); drawDiagram(); }
    },
    run: (r) => {
      if (r.id !== id) return;
      r._received = Date.now();
      row = r;
      drawSummary();
      drawDiagram();
    },
    removed: (r) => { if (r.id === id) message.textContent = "This run was deleted."; },
    timeline: (t) => {
      steps = t.steps;
      earlier = t.earlier || 0;
      path = {
        visited: new Set(t.visited || []),
        taken: new Set((t.taken || []).map(([from, to]) => from + "\u0000" + to)),
      };
      drawSteps();
      const last = latestWithOutput();
      if (selected === null && last !== null) showOutput(last);
    },
    step: (s) => {
      const latestBefore = latestWithOutput();
      // A terminal state shares the number of the step before it: the key is both.
      const at = steps.findIndex((x) => x.step === s.step && x.state === s.state);
      if (at >= 0) steps[at] = s; else steps.push(s);
      // A live run of thousands of steps: keep the page's table as small as the first one.
      if (steps.length > 2 * STEP_PAGE) {
        const drop = steps.length - STEP_PAGE;
        for (const old of steps.splice(0, drop)) {
          path.visited.add(old.state);
          if (old.next) path.taken.add(old.state + "\u0000" + old.next);
        }
        earlier += drop;
      }
      drawSteps();
      // Follow the newest step's output while the newest one before it was showing.
      if (s.has_output && selected !== s.step && (selected === null || selected === latestBefore)) {
        showOutput(s.step);
      }
    },
    problem: (p) => { message.textContent = p.error; },
  });
  setInterval(() => {
    if (!row || !row.live) return;
    drawSummary();
    for (const tr of timeline.querySelectorAll('tr[data-status="running"]')) {
      const s = steps.find((x) => String(x.step) === tr.getAttribute("data-step")
        && x.state === tr.getAttribute("data-state"));
      if (s) tr.querySelector(".step-duration").textContent = stepDuration(s);
    }
  }, 1000);
}

// ---------- the states diagram ----------

// Lays the states out in columns by their distance from the initial state (breadth first),
// draws every route as an arrow, and highlights the states and routes the run took.
function drawGraph(graph, steps, path, current, live) {
  const names = graph.states.map((s) => s.name);
  const byName = new Map(graph.states.map((s) => [s.name, s]));
  const layer = new Map();
  const start = graph.initial && byName.has(graph.initial) ? graph.initial : names[0];
  const queue = start ? [start] : [];
  if (start) layer.set(start, 0);
  while (queue.length) {
    const name = queue.shift();
    for (const route of byName.get(name).routes) {
      if (route.target && byName.has(route.target) && !layer.has(route.target)) {
        layer.set(route.target, layer.get(name) + 1);
        queue.push(route.target);
      }
    }
  }
  let extra = Math.max(0, ...layer.values()) + 1;
  for (const name of names) if (!layer.has(name)) layer.set(name, extra);
  const columns = [];
  for (const name of names) {
    const l = layer.get(name);
    (columns[l] = columns[l] || []).push(name);
  }
  // TOP leaves room for the arcs of routes that go back (drawn above the boxes).
  const W = 150, H = 36, GX = 90, GY = 34, PAD = 24, TOP = 70;
  const pos = new Map();
  columns.forEach((col, c) => (col || []).forEach((name, r) => {
    pos.set(name, { x: PAD + c * (W + GX), y: TOP + r * (H + GY) });
  }));
  const rowsMax = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = PAD * 2 + columns.length * (W + GX) - GX;
  const height = TOP + PAD + rowsMax * (H + GY) - GY;

  // The path taken: visited states, and each move between consecutive steps.
  const visited = new Set([...path.visited, ...steps.map((s) => s.state)]);
  const taken = new Set(path.taken);
  for (let i = 1; i < steps.length; i++) taken.add(steps[i - 1].state + "\u0000" + steps[i].state);
  for (const s of steps) if (s.next) taken.add(s.state + "\u0000" + s.next);

  const root = svg("svg", { width, height, viewBox: "0 0 " + width + " " + height, role: "img" });
  const defs = svg("defs");
  // Colors come from the stylesheet (classes): the page's policy allows no inline style.
  for (const [idName, cls] of [["arrow", "arrowhead"], ["arrow-taken", "arrowhead taken"]]) {
    const marker = svg("marker", { id: idName, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerUnits: "userSpaceOnUse", markerWidth: 9, markerHeight: 9, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: cls }));
    defs.append(marker);
  }
  root.append(defs);

  // One arrow per (from, to), labelled with its verdicts.
  const edges = new Map();
  for (const state of graph.states) {
    for (const route of state.routes) {
      if (!route.target || !byName.has(route.target)) continue;
      const key = state.name + "\u0000" + route.target;
      if (!edges.has(key)) edges.set(key, { from: state.name, to: route.target, labels: [] });
      edges.get(key).labels.push(route.verdict);
    }
  }
  for (const [key, edge] of edges) {
    const a = pos.get(edge.from), b = pos.get(edge.to);
    const isTaken = taken.has(key);
    const g = svg("g", { class: "edge" + (isTaken ? " taken" : ""), "data-from": edge.from, "data-to": edge.to });
    let d, lx, ly;
    if (edge.from === edge.to) {
      const x = a.x + W / 2, y = a.y;
      d = "M" + (x - 18) + "," + y + " C" + (x - 30) + "," + (y - 40) + " " + (x + 30) + "," + (y - 40) + " " + (x + 18) + "," + y;
      lx = x; ly = y - 34;
    } else if (b.x > a.x) {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      d = "M" + x1 + "," + y1 + " C" + (x1 + GX / 2) + "," + y1 + " " + (x2 - GX / 2) + "," + y2 + " " + x2 + "," + y2;
      lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 6;
    } else {
      // Back or sideways: an arc above the boxes, from the top of one to the top of the other.
      const x1 = a.x + W / 2 + 20, y1 = a.y, x2 = b.x + W / 2 - 20, y2 = b.y;
      // Control points at height c put the arc's top at about y + 0.75 (c - y).
      const c = Math.min(y1, y2) - 66;
      d = "M" + x1 + "," + y1 + " C" + x1 + "," + c + " " + x2 + "," + c + " " + x2 + "," + y2;
      lx = (x1 + x2) / 2; ly = Math.min(y1, y2) - 0.75 * 66 - 4;
    }
    g.append(svg("path", { d, "marker-end": isTaken ? "url(#arrow-taken)" : "url(#arrow)" }));
    // A `next:` route carries every verdict: name two, the title has them all.
    const label = edge.labels.length > 2 ? edge.labels.slice(0, 2).join(", ") + ", …" : edge.labels.join(", ");
    g.append(svg("text", { x: lx, y: ly, "text-anchor": "middle" }, label));
    g.append(svg("title", {}, edge.from + " → " + edge.to + ": " + edge.labels.join(", ")));
    root.append(g);
  }
  for (const name of names) {
    const p = pos.get(name), state = byName.get(name);
    let cls = "node";
    if (visited.has(name)) cls += " visited";
    if (name === current) cls += " current";
    if (state.terminal) cls += " terminal terminal-" + state.terminal;
    const g = svg("g", { class: cls, "data-state": name });
    g.append(svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: state.terminal ? 16 : 5 }));
    const label = name.length > 20 ? name.slice(0, 19) + "…" : name;
    g.append(svg("text", { x: p.x + W / 2, y: p.y + H / 2 + 4, "text-anchor": "middle" }, label));
    g.append(svg("title", {}, name + (state.summary ? ": " + state.summary : "")));
    root.append(g);
  }
  return root;
}

// ---------- routing ----------

const match = location.pathname.match(/^\/runs\/([^/]+)$/);
if (match) {
  runPage(decodeURIComponent(match[1]));
} else {
  listPage();
}
