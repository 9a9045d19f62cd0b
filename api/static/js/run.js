// One fan-out as the page knows it: per-agent state built from the merged event stream.
// No DOM here: the view reads this state, and the exports serialise it.

export const TERMINAL = new Set(["agent_done", "agent_error", "agent_cancelled"]);

function newAgent(agentId, label) {
  return {
    agentId,
    label: label || agentId,
    status: "waiting", // waiting | streaming | done | error | cancelled
    stopping: false, // the user pressed Stop; the agent has not ended yet
    runId: null,
    text: "",
    reasoning: "",
    tools: new Map(), // tool_call_id -> {name, arguments, status, result}
    startT: null,
    firstT: null,
    lastT: null,
    deltas: 0,
    usage: null,
    metrics: null, // from agent_done (the server's figures win over the live estimate)
    stopReason: null,
    error: null, // {code, message, retryable}
    cancelReason: null,
  };
}

export class Run {
  constructor({ fanoutId, prompt, requested }) {
    this.fanoutId = fanoutId;
    this.prompt = prompt;
    this.requested = requested; // the agent refs sent, for placeholders and the export
    this.createdAt = new Date();
    this.agents = new Map();
    this.options = null;
    this.summary = null; // the fanout_done payload
    this.durationS = null;
    this.finished = false;
    this.lastT = 0;
    // performance.now() at the fan-out's t = 0, estimated from the first event seen; it
    // drives the live duration between events.
    this.clockZero = null;
  }

  agent(agentId, label) {
    let state = this.agents.get(agentId);
    if (!state) {
      state = newAgent(agentId, label);
      this.agents.set(agentId, state);
    }
    return state;
  }

  /** Apply one event; returns the agent state it changed, or null for fan-out events. */
  apply(ev) {
    if (this.clockZero === null) this.clockZero = performance.now() - ev.t * 1000;
    this.lastT = Math.max(this.lastT, ev.t);
    if (ev.type === "fanout_start") {
      this.prompt = ev.prompt ?? this.prompt;
      this.options = ev.options ?? null;
      for (const a of ev.agents ?? []) this.agent(a.agent_id, a.label);
      return null;
    }
    if (ev.type === "fanout_done") {
      this.summary = ev;
      this.durationS = ev.duration_s ?? ev.t;
      this.finished = true;
      for (const [agentId, entry] of Object.entries(ev.summary ?? {})) {
        const a = this.agent(agentId, entry.label);
        if (!a.metrics && entry.metrics) a.metrics = entry.metrics;
      }
      return null;
    }
    const a = this.agent(ev.agent_id, ev.label);
    a.lastT = ev.t;
    switch (ev.type) {
      case "agent_start":
        a.runId = ev.run_id ?? a.runId;
        a.startT = a.startT ?? ev.t;
        break;
      case "content":
      case "reasoning":
        if (a.firstT === null) a.firstT = ev.t;
        if (a.status === "waiting") a.status = "streaming";
        a.deltas += 1;
        if (ev.type === "content") a.text += ev.delta ?? "";
        else a.reasoning += ev.delta ?? "";
        break;
      case "tool_call":
        if (a.status === "waiting") a.status = "streaming";
        a.tools.set(ev.tool_call_id ?? `call-${a.tools.size}`, {
          name: ev.name,
          arguments: ev.arguments,
          status: null,
          result: undefined,
        });
        break;
      case "tool_result": {
        const id = ev.tool_call_id ?? `result-${a.tools.size}`;
        const call = a.tools.get(id) ?? { name: "tool", arguments: undefined };
        a.tools.set(id, { ...call, status: ev.status ?? null, result: ev.result });
        break;
      }
      case "usage":
        a.usage = {
          prompt_tokens: ev.prompt_tokens,
          completion_tokens: ev.completion_tokens,
          total_tokens: ev.total_tokens,
          step_count: ev.step_count,
        };
        break;
      case "agent_done":
        a.status = "done";
        a.stopReason = ev.stop_reason ?? null;
        a.metrics = ev.metrics ?? null;
        break;
      case "agent_error":
        a.status = "error";
        a.error = { code: ev.code, message: ev.message, retryable: Boolean(ev.retryable) };
        break;
      case "agent_cancelled":
        a.status = "cancelled";
        a.cancelReason = ev.reason ?? "user";
        break;
      default:
        break;
    }
    if (TERMINAL.has(ev.type)) a.stopping = false;
    return a;
  }

  get active() {
    return !this.finished;
  }

  /** Seconds since the fan-out started, as of now (or its end once finished). */
  now() {
    if (this.finished) return this.durationS ?? this.lastT;
    if (this.clockZero === null) return 0;
    return Math.max(this.lastT, (performance.now() - this.clockZero) / 1000);
  }
}

/** The figures of one agent: the server's once it is done, a live estimate before. */
export function figures(run, a) {
  const ended = TERMINAL_STATUS.has(a.status);
  const start = a.startT ?? 0;
  const tokens = a.usage?.completion_tokens || a.deltas || 0;
  const liveEnd = ended ? (a.lastT ?? start) : run.now();
  let ttft = a.firstT === null ? null : a.firstT - start;
  let duration = a.startT === null && a.lastT === null ? null : liveEnd - start;
  let rate = null;
  if (a.firstT !== null && tokens) {
    const span = liveEnd - a.firstT;
    if (span > 0) rate = tokens / span;
  }
  if (a.metrics) {
    ttft = a.metrics.ttft_s ?? ttft;
    duration = a.metrics.duration_s ?? duration;
    rate = a.metrics.tokens_per_s ?? rate;
  }
  return { ttft, rate, duration, tokens: tokens || null };
}

const TERMINAL_STATUS = new Set(["done", "error", "cancelled"]);

export function isEnded(a) {
  return TERMINAL_STATUS.has(a.status);
}

export function statusText(a) {
  switch (a.status) {
    case "waiting":
      return a.stopping ? "stopping…" : "waiting";
    case "streaming":
      return a.stopping ? "stopping…" : "streaming";
    case "done":
      return "done";
    case "error":
      return `error: ${a.error?.code ?? "unknown"}`;
    case "cancelled":
      return `cancelled (${a.cancelReason ?? "user"})`;
    default:
      return a.status;
  }
}
