// The DOM of one fan-out: a column per agent while it streams, then the comparison view.

import { copyText, download, fmt, toJSON, toMarkdown } from "./export.js";
import { renderInto } from "./markdown.js";
import { figures, isEnded, statusText } from "./run.js";

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function pretty(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

export class RunView {
  constructor(run, { onStop }) {
    this.run = run;
    this.onStop = onStop;
    this.cols = new Map();
    this.dirty = new Set();
    this.frame = null;

    this.root = el("section", { class: "run", "data-fanout-id": run.fanoutId });
    const head = el("header", { class: "run-head" });
    const title = el("h2", { class: "run-prompt" }, run.prompt);
    const meta = el("p", { class: "run-meta" }, `fan-out ${run.fanoutId}`);
    this.tabs = el("div", { class: "tabs", role: "tablist", "aria-label": "View" });
    this.liveTab = this.tab("Live", true);
    this.compareTab = this.tab("Compare", false);
    this.compareTab.disabled = true;
    this.tabs.append(this.liveTab, this.compareTab);
    head.append(title, meta, this.tabs);

    this.columns = el("div", { class: "columns", role: "tabpanel" });
    this.compare = el("div", { class: "compare", role: "tabpanel" });
    this.compare.hidden = true;
    this.root.append(head, this.columns, this.compare);

    this.liveTab.addEventListener("click", () => this.show("live"));
    this.compareTab.addEventListener("click", () => this.show("compare"));
    // Live figures (duration, tokens/s) move between events too.
    this.ticker = setInterval(() => this.tick(), 250);
  }

  tab(text, selected) {
    const button = el("button", { type: "button", role: "tab", class: "tab" }, text);
    button.setAttribute("aria-selected", String(selected));
    return button;
  }

  show(which) {
    const compare = which === "compare" && !this.compareTab.disabled;
    this.columns.hidden = compare;
    this.compare.hidden = !compare;
    this.liveTab.setAttribute("aria-selected", String(!compare));
    this.compareTab.setAttribute("aria-selected", String(compare));
  }

  /** Called after each event: `agent` is the agent state it changed (null: fan-out level). */
  update(agent) {
    if (agent) {
      this.column(agent);
      this.dirty.add(agent.agentId);
    } else {
      for (const a of this.run.agents.values()) {
        this.column(a);
        this.dirty.add(a.agentId);
      }
    }
    this.columns.dataset.count = String(this.run.agents.size);
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
    if (this.run.finished) this.finish();
  }

  column(a) {
    let col = this.cols.get(a.agentId);
    if (col) return col;
    const node = document.getElementById("column-template").content.firstElementChild.cloneNode(true);
    node.dataset.agentId = a.agentId;
    node.querySelector(".label").textContent = a.label;
    const stop = node.querySelector(".stop");
    stop.setAttribute("aria-label", `Stop ${a.label}`);
    stop.addEventListener("click", () => this.onStop(a.agentId));
    // A session's earlier turns, above the live answer (set by the page).
    const thread = this.threadFor ? this.threadFor(a.agentId) : null;
    if (thread) node.insertBefore(thread, node.querySelector(".answer"));
    col = {
      node,
      stop,
      status: node.querySelector(".status"),
      problem: node.querySelector(".problem"),
      reasoning: node.querySelector(".reasoning"),
      reasoningText: node.querySelector(".reasoning-text"),
      tools: node.querySelector(".tools"),
      answer: node.querySelector(".answer"),
      raw: node.querySelector(".raw"),
      metrics: Object.fromEntries(
        [...node.querySelectorAll("[data-metric]")].map((d) => [d.dataset.metric, d]),
      ),
      shownText: null,
    };
    this.cols.set(a.agentId, col);
    this.columns.append(node);
    return col;
  }

  flush() {
    this.frame = null;
    for (const agentId of this.dirty) {
      const a = this.run.agents.get(agentId);
      if (a) this.paint(a, this.cols.get(agentId));
    }
    this.dirty.clear();
  }

  paint(a, col) {
    col.node.dataset.status = a.status;
    col.node.classList.toggle("stopping", a.stopping);
    col.status.textContent = statusText(a);
    col.stop.disabled = isEnded(a) || a.stopping || this.run.finished;
    if (a.status === "error") {
      col.problem.hidden = false;
      col.problem.textContent = a.error?.message || a.error?.code || "error";
    } else if (a.status === "cancelled") {
      col.problem.hidden = false;
      col.problem.textContent = `Cancelled: ${a.cancelReason}`;
    }
    if (a.reasoning) {
      col.reasoning.hidden = false;
      col.reasoningText.textContent = a.reasoning;
    }
    if (a.tools.size) this.paintTools(a, col);
    if (a.text !== col.shownText) {
      col.shownText = a.text;
      col.raw.textContent = a.text;
      renderInto(col.answer, a.text);
    }
    this.paintFigures(a, col.metrics);
  }

  paintTools(a, col) {
    const template = document.getElementById("tool-template");
    let i = 0;
    for (const [id, tool] of a.tools) {
      let chip = col.tools.children[i];
      if (!chip) {
        chip = template.content.firstElementChild.cloneNode(true);
        col.tools.append(chip);
      }
      chip.dataset.toolCallId = id;
      chip.querySelector(".chip-name").textContent = tool.name ?? "tool";
      const status = tool.status ?? (tool.result === undefined ? "running" : "");
      chip.querySelector(".chip-status").textContent = status;
      chip.dataset.status = status;
      chip.querySelector(".chip-args").textContent = pretty(tool.arguments);
      chip.querySelector(".chip-result").textContent =
        tool.result === undefined ? "(waiting)" : pretty(tool.result);
      i += 1;
    }
  }

  paintFigures(a, metrics) {
    const f = figures(this.run, a);
    metrics.ttft.textContent = fmt(f.ttft, 2, " s");
    metrics.rate.textContent = fmt(f.rate, 1);
    metrics.duration.textContent = fmt(f.duration, 1, " s");
    metrics.tokens.textContent = f.tokens === null ? "–" : String(f.tokens);
  }

  tick() {
    for (const a of this.run.agents.values()) {
      if (!isEnded(a)) this.paintFigures(a, this.cols.get(a.agentId).metrics);
    }
    if (this.run.finished) this.stopTicking();
  }

  stopTicking() {
    clearInterval(this.ticker);
    this.ticker = null;
  }

  /** Mark agents the user asked to stop (until their terminal event arrives). */
  markStopping(agentId) {
    for (const a of this.run.agents.values()) {
      if ((agentId === null || a.agentId === agentId) && !isEnded(a)) {
        a.stopping = true;
        this.dirty.add(a.agentId);
      }
    }
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  finish() {
    if (this.compareBuilt) return;
    this.compareBuilt = true;
    this.stopTicking();
    this.flush();
    this.buildCompare();
    this.compareTab.disabled = false;
    this.root.dataset.finished = "true";
    this.show("compare");
  }

  buildCompare() {
    const run = this.run;
    const bar = el("div", { class: "compare-actions" });
    const note = el("span", { class: "hint", role: "status" });
    const copy = el("button", { type: "button", class: "small" }, "Copy as Markdown");
    const md = el("button", { type: "button", class: "small" }, "Export Markdown");
    const json = el("button", { type: "button", class: "small" }, "Export JSON");
    copy.addEventListener("click", async () => {
      try {
        await copyText(toMarkdown(run));
        note.textContent = "Copied.";
      } catch (err) {
        note.textContent = `Copy failed: ${err.message}`;
      }
    });
    md.addEventListener("click", () =>
      download(`fanout-${run.fanoutId}.md`, toMarkdown(run), "text/markdown"),
    );
    json.addEventListener("click", () =>
      download(`fanout-${run.fanoutId}.json`, toJSON(run), "application/json"),
    );
    bar.append(copy, md, json, note);
    this.compare.append(bar, this.metricsTable(), this.answersGrid());
  }

  metricsTable() {
    const run = this.run;
    const agents = [...run.agents.values()];
    const rows = agents.map((a) => ({ a, f: figures(run, a) }));
    // Best per column among the agents that finished: lower is better except tokens/s.
    const columns = [
      { key: "ttft", title: "TTFT", better: "low", digits: 2, unit: " s" },
      { key: "rate", title: "tok/s", better: "high", digits: 1, unit: "" },
      { key: "duration", title: "Duration", better: "low", digits: 2, unit: " s" },
      { key: "tokens", title: "Tokens", better: "low", digits: 0, unit: "", hint: "fewest" },
    ];
    // Compared as shown, so that values that look equal are all marked.
    const shown = (c, v) => (typeof v === "number" ? Number(v.toFixed(c.digits)) : null);
    const best = {};
    for (const c of columns) {
      const values = rows
        .filter((r) => r.a.status === "done" && typeof r.f[c.key] === "number")
        .map((r) => shown(c, r.f[c.key]));
      if (values.length > 1) best[c.key] = c.better === "low" ? Math.min(...values) : Math.max(...values);
    }
    const table = el("table", { class: "metrics" });
    table.append(el("caption", {}, "Figures per agent (best of each column marked ★)"));
    const head = el("tr");
    head.append(el("th", { scope: "col" }, "Agent"), el("th", { scope: "col" }, "Outcome"));
    for (const c of columns) {
      const th = el("th", { scope: "col" }, c.title);
      if (c.hint) th.title = `best: ${c.hint}`;
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    table.append(thead);
    const body = table.appendChild(el("tbody"));
    for (const { a, f } of rows) {
      const tr = el("tr", { "data-agent-id": a.agentId });
      tr.append(el("th", { scope: "row" }, a.label), el("td", {}, statusText(a)));
      for (const c of columns) {
        const td = el("td", { "data-metric": c.key }, fmt(f[c.key], c.digits, c.unit));
        if (a.status === "done" && best[c.key] !== undefined && shown(c, f[c.key]) === best[c.key]) {
          td.classList.add("best");
          td.prepend(el("span", { class: "star", "aria-label": "best" }, "★ "));
        }
        tr.append(td);
      }
      body.append(tr);
    }
    return table;
  }

  answersGrid() {
    const grid = el("div", { class: "answers" });
    grid.dataset.count = String(this.run.agents.size);
    for (const a of this.run.agents.values()) {
      const card = el("article", { class: "answer-card", "data-agent-id": a.agentId, "data-status": a.status });
      const head = el("header", { class: "column-head" });
      head.append(el("h3", { class: "label" }, a.label), el("span", { class: "status" }, statusText(a)));
      const body = el("div", { class: "answer markdown" });
      renderInto(body, a.text || (a.status === "done" ? "" : "_(no answer)_"));
      card.append(head, body);
      grid.append(card);
    }
    return grid;
  }
}
