// Sessions on the panel page: the page's fan-outs go to one session's Letta conversations,
// so follow-ups see the earlier turns and nobody else's. The session id is kept in
// localStorage: reopening the page restores the session and shows its thread.
//
// A server without sessions (scripted agents) answers 404 on /v1/sessions: the page then
// sends plain fan-outs, as before.

import { ApiError, createSession, forkSession, getSession, sendToSession, sessionsAvailable } from "./api.js";

const STORAGE = "letta-fanout.session";

function remembered() {
  try {
    return localStorage.getItem(STORAGE) || null;
  } catch {
    return null;
  }
}

function remember(id) {
  try {
    if (id) localStorage.setItem(STORAGE, id);
    else localStorage.removeItem(STORAGE);
  } catch {
    // storage disabled: the session lasts until the page reloads
  }
}

/** The members a session was made of, as a comparable string. */
export function signature(members) {
  return JSON.stringify(members.map((m) => [m.agent_id ?? m.name ?? null, m.model ?? null]));
}

export class SessionPanel {
  constructor({ onChange }) {
    this.available = false;
    this.session = null; // {session_id, title, parent_id, agents: [...]}
    this.turns = []; // the thread as last read
    this.made = null; // signature of the members the session was created with
    this.onChange = onChange;
  }

  async init() {
    this.available = await sessionsAvailable();
    if (!this.available) return;
    const id = remembered();
    if (id) {
      try {
        await this.load(id);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) remember(null);
        else throw err;
      }
    }
    this.onChange(this);
  }

  async load(id) {
    const detail = await getSession(id);
    this.session = detail;
    this.turns = detail.turns ?? [];
    this.made = signature(detail.agents);
    remember(detail.session_id);
  }

  /** Forget the current session: the next message starts a new one. */
  reset() {
    this.session = null;
    this.turns = [];
    this.made = null;
    remember(null);
    this.onChange(this);
  }

  async fork() {
    if (!this.session) return;
    const forked = await forkSession(this.session.session_id);
    await this.load(forked.session_id);
    this.onChange(this);
  }

  /**
   * Send `message` to the session of `members` (created first when there is none, or when
   * the chosen members differ from the session's); resolves to {created, turns}: the new
   * fan-out and the thread before it.
   */
  async send(members, message, options) {
    const wanted = signature(members);
    if (!this.session || wanted !== this.made) {
      const created = await createSession(members);
      this.session = { ...created, turns: [] };
      this.turns = [];
      this.made = wanted;
      remember(created.session_id);
      this.onChange(this);
    }
    const before = this.turns;
    const created = await sendToSession(this.session.session_id, message, options);
    // The thread is read again once this fan-out ends (see refresh).
    return { created, turns: before };
  }

  async refresh() {
    if (!this.session) return;
    const detail = await getSession(this.session.session_id);
    this.turns = detail.turns ?? [];
  }
}

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

/** A column's thread: earlier prompts and this column's answers (agent text as text). */
export function threadList(turns, columnId) {
  const list = el("ol", { class: "thread", "aria-label": "Earlier turns" });
  for (const turn of turns) {
    const answer = turn.answers?.[columnId];
    if (!answer) continue;
    const item = el("li", { class: "turn", "data-fanout-id": turn.fanout_id, "data-state": answer.state });
    item.append(
      el("p", { class: "turn-prompt" }, turn.message),
      el("p", { class: "turn-answer" }, answer.text || `(${answer.state})`),
    );
    list.append(item);
  }
  return list;
}

/** The whole thread of a session, one column per member (shown when a session is restored). */
export function threadView(session, turns) {
  const root = el("section", { class: "run thread-view", "data-session-id": session.session_id });
  const head = el("header", { class: "run-head" });
  head.append(
    el("h2", { class: "run-prompt" }, session.title || "Session"),
    el("p", { class: "run-meta" }, `session ${session.session_id} · ${turns.length} turns`),
  );
  const columns = el("div", { class: "columns" });
  columns.dataset.count = String(session.agents.length);
  for (const member of session.agents) {
    const col = el("article", { class: "column", "data-agent-id": member.column_id, "data-status": "done" });
    const h = el("header", { class: "column-head" });
    h.append(el("h3", { class: "label" }, member.label));
    if (member.model) h.append(el("span", { class: "column-model" }, member.model));
    col.append(h, threadList(turns, member.column_id));
    columns.append(col);
  }
  root.append(head, columns);
  return root;
}
