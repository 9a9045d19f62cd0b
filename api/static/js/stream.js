// The event stream of one fan-out over SSE, resumed after any drop.
//
// The browser's EventSource would retry on its own (sending Last-Event-ID), but it gives up
// for good on an HTTP error and its delay is the browser's choice. So on any error the
// stream is closed and opened again here with `?after=<last index>`: the server replays
// exactly the events after that index, and indices already applied are skipped, so text is
// neither lost nor doubled. A gap in indices is treated like a drop.

import { withStreamToken } from "./api.js";

export const EVENT_TYPES = [
  "fanout_start",
  "agent_start",
  "reasoning",
  "content",
  "tool_call",
  "tool_result",
  "usage",
  "agent_done",
  "agent_error",
  "agent_cancelled",
  "fanout_done",
];

const MAX_DELAY_MS = 4000;
const GIVE_UP_AFTER = 40; // consecutive failed attempts (about two and a half minutes)

export class EventStream {
  /**
   * @param {string} url events URL of the fan-out
   * @param {{onEvent: (ev: object) => void, onState: (state: string, info?: object) => void}} handlers
   *   states: "connecting", "live", "reconnecting", "lost", "closed"
   */
  constructor(url, { onEvent, onState }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastIndex = -1;
    this.source = null;
    this.failures = 0;
    this.reconnects = 0;
    this.timer = null;
    this.closed = false;
  }

  start() {
    this.open("connecting");
  }

  /** The fan-out id in the events URL (`/v1/fanouts/<id>/events`), for its stream token. */
  fanoutId() {
    const match = /\/v1\/fanouts\/([^/]+)\/events/.exec(this.url);
    return match ? decodeURIComponent(match[1]) : null;
  }

  /** Try again after the stream was given up ("lost"). */
  retry() {
    if (this.closed) return;
    this.failures = 0;
    this.open("reconnecting");
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
    this.onState("closed");
  }

  async open(state) {
    if (this.closed) return;
    const url = new URL(this.url, window.location.href);
    if (this.lastIndex >= 0) url.searchParams.set("after", String(this.lastIndex));
    this.onState(state, { attempt: this.failures, reconnects: this.reconnects });
    const attempt = { close() {} };
    this.source = attempt; // a stand-in, so a close() meanwhile wins over this open
    let ready;
    try {
      ready = await withStreamToken(url, this.fanoutId());
    } catch {
      // No token (server unreachable, key refused): retry like a dropped connection.
      if (this.source === attempt) this.drop(attempt);
      return;
    }
    if (this.closed || this.source !== attempt) return;
    const source = new EventSource(ready.toString());
    this.source = source;
    const handle = (message) => this.receive(source, message);
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
    source.addEventListener("message", handle);
    source.addEventListener("open", () => {
      if (source !== this.source) return;
      this.failures = 0;
      this.onState("live", { reconnects: this.reconnects });
    });
    source.addEventListener("error", (e) => {
      // A server-sent `event: error` (e.g. the events expired) ends the stream for good;
      // a bare error event is the connection dropping.
      if (e.data) this.fail(source, e.data);
      else this.drop(source);
    });
  }

  receive(source, message) {
    if (source !== this.source || this.closed) return;
    let ev;
    try {
      ev = JSON.parse(message.data);
    } catch {
      console.warn("fan-out stream: ignoring a frame that is not JSON", message.data);
      return;
    }
    if (typeof ev.index !== "number" || ev.index <= this.lastIndex) return; // already applied
    if (ev.index !== this.lastIndex + 1) {
      console.warn(`fan-out stream: gap after ${this.lastIndex} (got ${ev.index}); resuming`);
      this.drop(source);
      return;
    }
    this.lastIndex = ev.index;
    try {
      this.onEvent(ev);
    } catch (err) {
      // A display bug must not turn into a reconnect loop: the event counts as received.
      console.error("fan-out stream: handling", ev.type, "failed:", err);
    }
    if (ev.type === "fanout_done") this.close();
  }

  fail(source, data) {
    if (source !== this.source || this.closed) return;
    let message = data;
    try {
      message = JSON.parse(data).message ?? data;
    } catch {
      // not JSON: show it as it came
    }
    source.close();
    this.source = null;
    this.onState("lost", { reconnects: this.reconnects, message });
  }

  drop(source) {
    if (source !== this.source || this.closed) return;
    source.close();
    this.source = null;
    this.failures += 1;
    this.reconnects += 1;
    if (this.failures > GIVE_UP_AFTER) {
      this.onState("lost", { reconnects: this.reconnects });
      return;
    }
    const delay = Math.min(MAX_DELAY_MS, 150 * 2 ** Math.min(this.failures - 1, 5));
    this.onState("reconnecting", { attempt: this.failures, delay, reconnects: this.reconnects });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open("reconnecting");
    }, delay);
  }
}
