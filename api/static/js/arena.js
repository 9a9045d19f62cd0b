// The arena on the page: blind votes on a fan-out's answers, the reveal, the leaderboard.
//
// In blind mode the page reads the fan-out through the server's blind stream: its columns
// are opaque ids in a random order drawn by the server, labelled "Answer A", "Answer B", ...
// Nothing in the DOM or in the events names an agent until the vote; the vote's answer
// says which agent each opaque id was, and only then are the names shown.

import { castVote, getLeaderboard } from "./api.js";

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

/** The vote bar of one fan-out watched blind. */
export class VoteBar {
  /**
   * @param {object} run the Run (its agents' labels change on reveal)
   * @param {HTMLElement} root the run's DOM root (the bar goes in after its header)
   * @param {{column_id: string, label: string}[]} columns the blind columns, in shown order
   */
  constructor(run, root, columns) {
    this.run = run;
    this.root = root;
    this.columns = columns;
    this.voted = false;
    this.node = el("section", { class: "vote-bar", "aria-label": "Vote" });
    const title = el("h3", { class: "vote-title" }, "Which answer is best?");
    this.buttons = el("div", { class: "vote-buttons" });
    for (const c of columns) {
      const b = el("button", { type: "button", class: "small vote-best", "data-column": c.column_id });
      b.textContent = `${c.label} is best`;
      b.addEventListener("click", () => this.vote({ winner: c.column_id }));
      this.buttons.append(b);
    }
    const tie = el("button", { type: "button", class: "small vote-tie" }, "Tie");
    tie.addEventListener("click", () => this.vote({ winner: "tie" }));
    const bad = el("button", { type: "button", class: "small vote-bad" }, "All bad");
    bad.addEventListener("click", () => this.vote({ winner: "both_bad" }));
    this.buttons.append(tie, bad);

    const details = el("details", { class: "vote-rank" });
    details.append(el("summary", {}, "Rank them all (drag, or use the arrows)"));
    this.ranking = el("ol", { class: "vote-ranking" });
    for (const c of columns) this.ranking.append(this.rankItem(c));
    const submit = el("button", { type: "button", class: "small vote-submit-ranking" }, "Vote this ranking");
    submit.addEventListener("click", () => {
      const order = [...this.ranking.children].map((li) => li.dataset.column);
      this.vote({ winner: order[0], ranking: order });
    });
    details.append(this.ranking, submit);

    this.message = el("p", { class: "hint vote-message", role: "status" });
    this.node.append(title, this.buttons, details, this.message);
    const head = root.querySelector(".run-head");
    head.after(this.node);
    root.dataset.blind = "true";
  }

  rankItem(c) {
    const li = el("li", { draggable: "true", "data-column": c.column_id });
    const name = el("span", { class: "rank-label" }, c.label);
    const up = el("button", { type: "button", class: "small rank-up", "aria-label": `Move ${c.label} up` }, "↑");
    const down = el("button", { type: "button", class: "small rank-down", "aria-label": `Move ${c.label} down` }, "↓");
    up.addEventListener("click", () => li.previousElementSibling?.before(li));
    down.addEventListener("click", () => li.nextElementSibling?.after(li));
    li.addEventListener("dragstart", (e) => {
      this.dragged = li;
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", c.label);
    });
    li.addEventListener("dragover", (e) => {
      e.preventDefault();
      const moving = this.dragged;
      if (!moving || moving === li) return;
      const box = li.getBoundingClientRect();
      if (e.clientY < box.top + box.height / 2) li.before(moving);
      else li.after(moving);
    });
    li.addEventListener("dragend", () => {
      this.dragged = null;
    });
    li.append(name, up, down);
    return li;
  }

  async vote(body) {
    if (this.voted) return;
    for (const b of this.node.querySelectorAll("button")) b.disabled = true;
    this.message.textContent = "Sending your vote…";
    let answer;
    try {
      answer = await castVote(this.run.fanoutId, body);
    } catch (err) {
      this.message.textContent = `The vote failed: ${err.message}`;
      for (const b of this.node.querySelectorAll("button")) b.disabled = false;
      return;
    }
    this.voted = true;
    this.reveal(answer.revealed ?? {});
    const still = answer.running?.length ? ` (${answer.running.length} still answering)` : "";
    this.message.textContent = `Vote recorded${still}. The names are shown now.`;
  }

  /** Show which agent each opaque column was: labels everywhere the run shows them. */
  reveal(revealed) {
    const names = {};
    for (const [opaque, column] of Object.entries(revealed)) {
      const letter = this.columns.find((c) => c.column_id === opaque)?.label ?? opaque;
      const name = column.model ? `${column.label} (${column.model})` : column.label;
      names[opaque] = `${letter}: ${name}`;
      const agent = this.run.agents.get(opaque);
      if (agent) agent.label = names[opaque];
    }
    const selector = (id) => `[data-agent-id="${CSS.escape(id)}"]`;
    for (const [opaque, text] of Object.entries(names)) {
      for (const node of this.root.querySelectorAll(
        `.column${selector(opaque)} .label, .answer-card${selector(opaque)} .label, tr${selector(opaque)} th`,
      )) {
        node.textContent = text;
      }
      for (const node of this.node.querySelectorAll(`[data-column="${CSS.escape(opaque)}"]`)) {
        node.dataset.revealed = text;
      }
    }
    const list = el("ul", { class: "vote-revealed" });
    for (const c of this.columns) {
      if (names[c.column_id]) list.append(el("li", {}, names[c.column_id]));
    }
    this.node.append(list);
    this.root.dataset.revealed = "true";
  }
}

/** Fill `container` with the leaderboard (`by`: agent, agent_model or label). */
export async function showLeaderboard(container, by = "agent") {
  container.replaceChildren(el("p", { class: "hint" }, "Loading…"));
  let board;
  try {
    board = await getLeaderboard(by);
  } catch (err) {
    container.replaceChildren(el("p", { class: "hint error-text" }, `No leaderboard: ${err.message}`));
    return;
  }
  if (!board.rows.length) {
    container.replaceChildren(el("p", { class: "hint" }, "No votes yet."));
    return;
  }
  const table = el("table", { class: "leaderboard" });
  table.append(el("caption", {}, `${board.n_votes} votes; 95% intervals`));
  const head = el("tr");
  for (const name of ["#", "Agent", "Rating", "95% CI", "W/L/T"]) head.append(el("th", { scope: "col" }, name));
  const thead = el("thead");
  thead.append(head);
  table.append(thead);
  const body = table.appendChild(el("tbody"));
  board.rows.forEach((row, n) => {
    const tr = el("tr", { "data-agent-id": row.agent_id });
    const name = row.model && by !== "agent" ? `${row.label} (${row.model})` : row.label;
    tr.append(
      el("td", {}, String(n + 1)),
      el("th", { scope: "row" }, name),
      el("td", { class: "num" }, row.rating.toFixed(0)),
      el("td", { class: "num" }, `${row.ci_low.toFixed(0)}–${row.ci_high.toFixed(0)}`),
      el("td", { class: "num" }, `${row.wins}/${row.losses}/${row.ties}`),
    );
    body.append(tr);
  });
  container.replaceChildren(table);
  container.title = board.method;
}
