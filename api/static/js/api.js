// Calls to the orchestrator's HTTP API (same origin as the page).
//
// A server started with an API key wants it on every call: as a Bearer header on fetch.
// EventSource cannot send headers, so the page asks for a short-lived stream token (with
// the key, in a header) and puts that in the URL: the key itself never appears in a URL.
// The page keeps the key for the browser tab only (sessionStorage).

const KEY_STORAGE = "letta-fanout.api-key";

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return null;
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lasts until the page reloads
  }
  memoryKey = key || null;
}

let memoryKey = null;

function currentKey() {
  return apiKey() ?? memoryKey;
}

/**
 * `url` (a URL object) ready for EventSource: with a key set, a fresh stream token for
 * that fan-out as `access_token` (tokens are short-lived, so one is fetched per connect).
 */
export async function withStreamToken(url, fanoutId) {
  if (!currentKey()) return url;
  const issued = await request("POST", "/v1/stream-tokens", fanoutId ? { fanout_id: fanoutId } : {});
  url.searchParams.set("access_token", issued.token);
  return url;
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  const key = currentKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`cannot reach the server (${err.message})`, 0);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(describe(data) || `${response.status} ${response.statusText}`, response.status);
  }
  return data;
}

// FastAPI puts errors in `detail` (a string, or a list of validation problems); our own
// errors may carry `error.message`.
function describe(data) {
  if (!data) return "";
  const detail = data.detail ?? data.error ?? data.message;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc ?? []).join(".")}: ${d.msg ?? JSON.stringify(d)}`).join("; ");
  }
  if (detail && typeof detail === "object") return detail.message ?? JSON.stringify(detail);
  return "";
}

export async function listAgents() {
  const data = await request("GET", "/v1/agents");
  return Array.isArray(data) ? data : (data?.agents ?? []);
}

export async function listPresets() {
  const data = await request("GET", "/v1/presets");
  return data?.presets ?? [];
}

/** Start a fan-out; resolves to {fanout_id, events_url}. */
export async function createFanout(agents, message, options) {
  const body = { agents, message };
  if (options && Object.keys(options).length) body.options = options;
  return request("POST", "/v1/fanouts", body);
}

/**
 * Whether this server has sessions (a Letta server: not with scripted agents). Read from
 * the OpenAPI document, so that a server without them is not asked for a 404.
 */
export async function sessionsAvailable() {
  try {
    const doc = await request("GET", "/openapi.json");
    return Boolean(doc?.paths?.["/v1/sessions"]);
  } catch {
    return false;
  }
}

/** Create a session: members [{agent_id | name, label?, model?}]. */
export async function createSession(agents, title = null) {
  const body = { agents };
  if (title) body.title = title;
  return request("POST", "/v1/sessions", body);
}

/** The session with its thread (`turns`). */
export async function getSession(sessionId) {
  return request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}`);
}

export async function forkSession(sessionId) {
  return request("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/fork`, {});
}

/** Send a message to a session's conversations; resolves to {fanout_id, events_url}. */
export async function sendToSession(sessionId, message, options) {
  const body = { message };
  if (options && Object.keys(options).length) body.options = options;
  return request("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/fanouts`, body);
}

/** Cancel one agent of a fan-out, or all of them when agentId is null. */
export async function cancelFanout(fanoutId, agentId = null) {
  const body = agentId ? { agent_id: agentId } : {};
  return request("POST", `/v1/fanouts/${encodeURIComponent(fanoutId)}/cancel`, body);
}

/** Watch a fan-out blind: resolves to {fanout_id, events_url, columns: [{column_id, label}]}. */
export async function startBlind(fanoutId) {
  return request("POST", `/v1/fanouts/${encodeURIComponent(fanoutId)}/blind`, {});
}

/** Vote on a fan-out's answers: {winner, ranking?}; resolves to the stored vote. */
export async function castVote(fanoutId, body) {
  return request("POST", `/v1/fanouts/${encodeURIComponent(fanoutId)}/votes`, body);
}

/** The leaderboard of every vote, `by` agent, agent_model or label. */
export async function getLeaderboard(by = "agent") {
  return request("GET", `/v1/leaderboard?by=${encodeURIComponent(by)}`);
}
