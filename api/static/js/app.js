// The panel page: pick agents, send a prompt, watch the answers stream side by side.

import { ApiError, cancelFanout, createFanout, listAgents, listPresets, setApiKey, startBlind } from "./api.js";
import { showLeaderboard, VoteBar } from "./arena.js";
import { Run } from "./run.js";
import { SessionPanel, threadList, threadView } from "./session.js";
import { EventStream } from "./stream.js";
import { RunView } from "./view.js";

const $ = (id) => document.getElementById(id);

const state = {
  agents: [], // [{agent_id, name, model, description}]
  selected: new Set(), // agent ids, kept in list order when sending
  presets: [],
  preset: null,
  entries: [], // [{run, view, stream, item}] oldest first
  shown: null,
  extra: [], // more columns: [{agent_id, name, model}] (same agent, another model)
  sessions: null, // the SessionPanel (sessions on a Letta server)
};

// -- agents and presets ---------------------------------------------------------------------

function normaliseAgent(raw) {
  const id = raw.agent_id ?? raw.id;
  return { agent_id: id, name: raw.name ?? id, model: raw.model ?? null, description: raw.description ?? null };
}

async function loadAgents() {
  const message = $("agents-message");
  message.textContent = "Loading agents…";
  try {
    state.agents = (await listAgents()).map(normaliseAgent);
    message.textContent = state.agents.length ? "" : "The server knows no agents yet.";
  } catch (err) {
    state.agents = [];
    message.textContent = `Could not list agents: ${err.message}`;
    if (err.status === 401) askForKey();
  }
  renderAgents();
}

function renderAgents() {
  const list = $("agents");
  const filter = $("agent-filter").value.trim().toLowerCase();
  list.replaceChildren();
  for (const agent of state.agents) {
    const haystack = `${agent.name} ${agent.agent_id} ${agent.model ?? ""}`.toLowerCase();
    const li = document.createElement("li");
    li.hidden = Boolean(filter) && !haystack.includes(filter);
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = agent.agent_id;
    box.checked = state.selected.has(agent.agent_id);
    box.dataset.agentId = agent.agent_id;
    box.addEventListener("change", () => {
      if (box.checked) state.selected.add(agent.agent_id);
      else state.selected.delete(agent.agent_id);
      choosePreset(null, { keepSelection: true });
      renderCount();
    });
    const name = document.createElement("span");
    name.className = "agent-name";
    name.textContent = agent.name;
    label.append(box, name);
    if (agent.model) {
      const model = document.createElement("span");
      model.className = "agent-model";
      model.textContent = agent.model;
      label.append(model);
    }
    if (agent.description) label.title = agent.description;
    li.append(label);
    if (state.sessions?.available) {
      const add = document.createElement("button");
      add.type = "button";
      add.className = "add-column small";
      add.textContent = "+";
      add.dataset.agentId = agent.agent_id;
      add.title = "Another column of this agent, with another model";
      add.setAttribute("aria-label", `Add ${agent.name} with another model`);
      add.addEventListener("click", () => addColumn(agent));
      li.append(add);
    }
    list.append(li);
  }
  renderCount();
}

function addColumn(agent) {
  state.extra.push({ agent_id: agent.agent_id, name: agent.name, model: "" });
  choosePreset(null, { keepSelection: true });
  renderExtra();
  const inputs = $("extra-columns").querySelectorAll("input");
  inputs[inputs.length - 1]?.focus();
}

function renderExtra() {
  const list = $("extra-columns");
  list.replaceChildren();
  $("extra-box").hidden = !state.extra.length;
  const models = [...new Set(state.agents.map((a) => a.model).filter(Boolean))];
  $("model-options").replaceChildren(
    ...models.map((m) => Object.assign(document.createElement("option"), { value: m })),
  );
  state.extra.forEach((column, n) => {
    const li = document.createElement("li");
    li.dataset.agentId = column.agent_id;
    const name = document.createElement("span");
    name.className = "agent-name";
    name.textContent = column.name;
    const model = document.createElement("input");
    model.className = "column-model";
    model.setAttribute("list", "model-options");
    model.placeholder = "model handle";
    model.setAttribute("aria-label", `Model of ${column.name} (column ${n + 1})`);
    model.value = column.model;
    model.addEventListener("input", () => {
      column.model = model.value.trim();
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove this column of ${column.name}`);
    remove.addEventListener("click", () => {
      state.extra.splice(n, 1);
      renderExtra();
    });
    li.append(name, model, remove);
    list.append(li);
  });
  renderCount();
}

function renderCount() {
  const count = state.preset ? state.preset.agents.length : state.selected.size + state.extra.length;
  $("agent-count").textContent = state.agents.length ? `${count} of ${state.agents.length}` : "";
}

async function loadPresets() {
  try {
    state.presets = await listPresets();
  } catch {
    state.presets = []; // presets are optional: the picker still works
  }
  const select = $("preset");
  select.replaceChildren(select.options[0]);
  for (const preset of state.presets) {
    const option = document.createElement("option");
    option.value = preset.id;
    option.textContent = `${preset.title} (${preset.agents.length} agents)`;
    select.append(option);
  }
}

function choosePreset(id, { keepSelection = false } = {}) {
  const preset = state.presets.find((p) => p.id === id) ?? null;
  state.preset = preset;
  $("preset").value = preset ? preset.id : "";
  $("preset-description").textContent = preset?.description ?? "";
  if (preset && !keepSelection) {
    state.selected.clear();
    for (const ref of preset.agents) {
      const match = state.agents.find((a) => a.agent_id === ref.agent_id || a.name === ref.name);
      if (match) state.selected.add(match.agent_id);
    }
    renderAgents();
  }
  renderSuggestions(preset?.prompts ?? []);
  renderCount();
}

function renderSuggestions(prompts) {
  const box = $("suggestions");
  box.replaceChildren();
  for (const text of prompts) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "suggestion small";
    button.textContent = text;
    button.addEventListener("click", () => {
      $("prompt").value = text;
      $("prompt").focus();
    });
    box.append(button);
  }
}

function chosenRefs() {
  if (state.preset) return { agents: state.preset.agents, options: cleanOptions(state.preset.options) };
  const agents = state.agents
    .filter((a) => state.selected.has(a.agent_id))
    .map((a) => ({ agent_id: a.agent_id, label: a.name }));
  if (state.sessions?.available) {
    for (const column of state.extra) {
      const member = { agent_id: column.agent_id, label: `${column.name} (${column.model || "default model"})` };
      if (column.model) member.model = column.model;
      agents.push(member);
    }
  }
  return { agents, options: null };
}

function cleanOptions(options) {
  if (!options) return null;
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== null && v !== undefined));
}

// -- fan-outs -------------------------------------------------------------------------------

async function send() {
  const message = $("ask-message");
  const prompt = $("prompt").value.trim();
  const { agents, options } = chosenRefs();
  message.textContent = "";
  if (!prompt) {
    message.textContent = "Type a prompt first.";
    return;
  }
  if (!agents.length) {
    message.textContent = "Pick at least one agent (or a preset).";
    return;
  }
  $("send").disabled = true;
  const blind = $("blind").checked;
  let created;
  let turns = null;
  try {
    if (state.sessions?.available) {
      ({ created, turns } = await state.sessions.send(agents, prompt, options));
    } else {
      created = await createFanout(agents, prompt, options);
    }
    // Blind: the page reads only the blind stream, whose columns name no agent.
    if (blind) created = { ...created, blind: await startBlind(created.fanout_id) };
  } catch (err) {
    const busy = err instanceof ApiError && err.status === 409;
    message.textContent = busy
      ? "This session is still answering: wait for it, or stop it, before the next message."
      : `Could not start the fan-out: ${err instanceof ApiError ? err.message : err}`;
    return;
  } finally {
    $("send").disabled = false;
  }
  $("prompt").value = "";
  start(created, prompt, agents, turns);
}

function start(created, prompt, agents, turns = null) {
  const run = new Run({ fanoutId: created.fanout_id, prompt, requested: agents });
  const entry = { run, view: null, stream: null, item: null, connection: "connecting", info: {} };
  entry.view = new RunView(run, { onStop: (agentId) => stop(entry, agentId) });
  if (turns && turns.length) entry.view.threadFor = (columnId) => threadList(turns, columnId);
  for (const old of document.querySelectorAll(".thread-view")) old.hidden = true;
  if (created.blind) {
    entry.voteBar = new VoteBar(run, entry.view.root, created.blind.columns);
  }
  const url =
    created.blind?.events_url ??
    created.events_url ??
    `/v1/fanouts/${encodeURIComponent(run.fanoutId)}/events`;
  entry.stream = new EventStream(url, {
    onEvent: (ev) => {
      entry.view.update(run.apply(ev));
      if (ev.type === "fanout_done") finished(entry);
    },
    onState: (connection, info = {}) => {
      entry.connection = connection;
      entry.info = info;
      if (state.shown === entry) renderConnection(entry);
    },
  });
  state.entries.push(entry);
  $("welcome").hidden = true;
  $("runs").append(entry.view.root);
  addHistory(entry);
  show(entry);
  entry.stream.start();
}

async function stop(entry, agentId = null) {
  if (!entry || entry.run.finished) return;
  entry.view.markStopping(agentId);
  try {
    await cancelFanout(entry.run.fanoutId, agentId);
  } catch (err) {
    $("ask-message").textContent = `Stop failed: ${err.message}`;
  }
}

function finished(entry) {
  if (state.sessions?.session) state.sessions.refresh().then(renderSessionInfo, () => {});
  const counts = entry.run.summary?.counts ?? {};
  const parts = Object.entries(counts)
    .filter(([, n]) => n)
    .map(([k, n]) => `${n} ${k}`);
  entry.item.querySelector(".history-status").textContent = parts.join(", ") || "finished";
  entry.item.dataset.status = "finished";
  if (state.shown === entry) renderStopAll();
}

function show(entry) {
  state.shown = entry;
  for (const other of state.entries) {
    other.view.root.hidden = other !== entry;
    other.item.querySelector("button").setAttribute("aria-current", String(other === entry));
  }
  renderConnection(entry);
  renderStopAll();
}

function renderStopAll() {
  $("stop-all").disabled = !state.shown || state.shown.run.finished;
}

const CONNECTION_TEXT = {
  idle: "",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Connection dropped; reconnecting…",
  lost: "Connection lost.",
  closed: "",
};

function renderConnection(entry) {
  const box = $("connection");
  const connection = entry?.connection ?? "idle";
  box.dataset.state = connection;
  box.dataset.reconnects = String(entry?.stream?.reconnects ?? 0);
  box.replaceChildren(CONNECTION_TEXT[connection] ?? connection);
  if (connection === "reconnecting" && entry.info.attempt > 1) {
    box.append(` (attempt ${entry.info.attempt})`);
  }
  if (connection === "lost" && entry.info.message) box.append(` ${entry.info.message}`);
  if (connection === "lost") {
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "small";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => entry.stream.retry());
    box.append(" ", retry);
  }
}

function addHistory(entry) {
  const li = document.createElement("li");
  li.dataset.fanoutId = entry.run.fanoutId;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "history-item";
  const prompt = document.createElement("span");
  prompt.className = "history-prompt";
  prompt.textContent = entry.run.prompt;
  const meta = document.createElement("span");
  meta.className = "history-meta";
  const time = entry.run.createdAt.toLocaleTimeString();
  meta.textContent = `${time} · ${entry.run.requested.length} agents · `;
  const status = document.createElement("span");
  status.className = "history-status";
  status.textContent = "running";
  meta.append(status);
  button.append(prompt, meta);
  button.addEventListener("click", () => show(entry));
  li.append(button);
  entry.item = li;
  $("history").prepend(li);
  $("history-empty").hidden = true;
}

function renderSession(panel) {
  $("session-box").hidden = !panel.available;
  if (panel.session) {
    // The session's members are the selection: plain ones ticked, the others as extra
    // columns with their model, in the session's order.
    state.preset = null;
    $("preset").value = "";
    state.selected = new Set(panel.session.agents.filter((m) => !m.model).map((m) => m.agent_id));
    state.extra = panel.session.agents
      .filter((m) => m.model)
      .map((m) => ({
        agent_id: m.agent_id,
        name: state.agents.find((a) => a.agent_id === m.agent_id)?.name ?? m.agent_id,
        model: m.model,
      }));
    renderExtra();
  }
  renderSessionInfo();
  for (const old of document.querySelectorAll(".thread-view")) old.remove();
  if (panel.session && panel.turns.length) {
    // A restored (or forked) session: its thread, one column per member.
    for (const entry of state.entries) entry.view.root.hidden = true;
    $("welcome").hidden = true;
    $("runs").append(threadView(panel.session, panel.turns));
  }
  renderAgents();
}

function renderSessionInfo() {
  const panel = state.sessions;
  if (!panel?.available) return;
  const session = panel.session;
  $("fork-session").disabled = !session;
  const info = $("session-info");
  info.dataset.sessionId = session?.session_id ?? "";
  if (!session) {
    info.textContent = "A new session starts with your next message.";
    return;
  }
  const names = session.agents.map((m) => m.label).join(", ");
  const forked = session.parent_id ? `, forked from ${session.parent_id}` : "";
  info.textContent = `${session.session_id}: ${panel.turns.length} turns with ${names}${forked}.`;
}

function askForKey() {
  $("key-form").hidden = false;
  $("api-key").focus();
}

// -- wiring ---------------------------------------------------------------------------------

function wire() {
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("stop-all").addEventListener("click", () => stop(state.shown));
  $("new-session").addEventListener("click", () => state.sessions.reset());
  $("fork-session").addEventListener("click", async () => {
    try {
      await state.sessions.fork();
    } catch (err) {
      $("ask-message").textContent = `Fork failed: ${err.message}`;
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.shown && !state.shown.run.finished) {
      e.preventDefault();
      stop(state.shown);
    }
  });
  $("preset").addEventListener("change", (e) => choosePreset(e.target.value || null));
  $("agent-filter").addEventListener("input", renderAgents);
  $("reload-agents").addEventListener("click", loadAgents);
  $("show-leaderboard").addEventListener("click", () =>
    showLeaderboard($("leaderboard"), $("leaderboard-by").value),
  );
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    setApiKey($("api-key").value.trim());
    $("api-key").value = "";
    $("key-form").hidden = true;
    await loadAgents();
    if (!state.presets.length) await loadPresets();
  });
}

async function main() {
  wire();
  state.sessions = new SessionPanel({ onChange: renderSession });
  await Promise.all([loadAgents(), loadPresets()]);
  try {
    await state.sessions.init();
  } catch (err) {
    $("ask-message").textContent = `Could not restore the session: ${err.message}`;
  }
  document.body.dataset.ready = "true";
}

main();
