// A finished (or partial) run as Markdown or JSON, for copy and download.

import { figures } from "./run.js";

export function fmt(value, digits = 2, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${Number(value).toFixed(digits)}${unit}`;
}

function outcome(a) {
  if (a.status === "error") return `error (${a.error?.code ?? "unknown"})`;
  if (a.status === "cancelled") return `cancelled (${a.cancelReason ?? "user"})`;
  return a.status;
}

function cell(text) {
  return String(text).replaceAll("|", "\\|").replaceAll("\n", " ");
}

export function toMarkdown(run) {
  const lines = [];
  lines.push(`# Fan-out ${run.fanoutId}`, "");
  lines.push(`Prompt: ${run.prompt}`, "");
  lines.push(`Started: ${run.createdAt.toISOString()}`, "");
  lines.push("| Agent | Outcome | TTFT (s) | tok/s | Duration (s) | Tokens |");
  lines.push("|---|---|---:|---:|---:|---:|");
  for (const a of run.agents.values()) {
    const f = figures(run, a);
    lines.push(
      `| ${cell(a.label)} | ${cell(outcome(a))} | ${fmt(f.ttft)} | ${fmt(f.rate, 1)} | ` +
        `${fmt(f.duration)} | ${f.tokens ?? "–"} |`,
    );
  }
  for (const a of run.agents.values()) {
    lines.push("", `## ${a.label}`, "");
    if (a.status === "error") lines.push(`> Error ${a.error?.code}: ${a.error?.message ?? ""}`, "");
    if (a.status === "cancelled") lines.push(`> Cancelled (${a.cancelReason}).`, "");
    lines.push(a.text || "_(no answer)_");
  }
  return `${lines.join("\n")}\n`;
}

export function toJSON(run) {
  const agents = [];
  for (const a of run.agents.values()) {
    agents.push({
      agent_id: a.agentId,
      label: a.label,
      status: a.status,
      run_id: a.runId,
      text: a.text,
      reasoning: a.reasoning,
      tool_calls: [...a.tools.entries()].map(([id, t]) => ({ tool_call_id: id, ...t })),
      usage: a.usage,
      metrics: figures(run, a),
      stop_reason: a.stopReason,
      error: a.error,
      cancel_reason: a.cancelReason,
    });
  }
  const doc = {
    fanout_id: run.fanoutId,
    prompt: run.prompt,
    created_at: run.createdAt.toISOString(),
    options: run.options,
    duration_s: run.durationS,
    counts: run.summary?.counts ?? null,
    agents,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http on another host has no clipboard API: fall back to a selection copy.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("the browser refused to copy");
}
