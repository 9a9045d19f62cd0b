// The panel page: pick agents, send a prompt, watch the answers stream side by side.

import { ApiError, cancelFanout, createFanout, listAgents, listPresets, setApiKey } from "./api.js";
import { Run } from "./run.js";
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
    list.append(li);
  }
  renderCount();
}

function renderCount() {
  const count = state.preset ? state.preset.agents.length : state.selected.size;
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
  let created;
  try {
    created = await createFanout(agents, prompt, options);
  } catch (err) {
    message.textContent = `Could not start the fan-out: ${err instanceof ApiError ? err.message : err}`;
    return;
  } finally {
    $("send").disabled = false;
  }
  $("prompt").value = "";
  start(created, prompt, agents);
}

function start(created, prompt, agents) {
  const run = new Run({ fanoutId: created.fanout_id, prompt, requested: agents });
  const entry = { run, view: null, stream: null, item: null, connection: "connecting", info: {} };
  entry.view = new RunView(run, { onStop: (agentId) => stop(entry, agentId) });
  const url = created.events_url ?? `/v1/fanouts/${encodeURIComponent(run.fanoutId)}/events`;
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
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.shown && !state.shown.run.finished) {
      e.preventDefault();
      stop(state.shown);
    }
  });
  $("preset").addEventListener("change", (e) => choosePreset(e.target.value || null));
  $("agent-filter").addEventListener("input", renderAgents);
  $("reload-agents").addEventListener("click", loadAgents);
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
  await Promise.all([loadAgents(), loadPresets()]);
  document.body.dataset.ready = "true";
}

main();
