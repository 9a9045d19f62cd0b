"""Rendering a :class:`~orchestrator.report._build.Report`: Markdown, standalone HTML, JSON.

Agent text is untrusted (a model wrote it): the HTML template autoescapes everything, and
the Markdown escapes the characters that would turn an answer into markup or break the
table. The HTML page has inline CSS and no external assets, so it opens from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined

from .._core._types import JSON
from ..batch._store import write_json_atomic
from ._build import Report, ReportColumn, build_report


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def figures(record: JSON) -> str:
    """One line of a cell's figures: ttft, tokens/s, duration, tokens, stop reason."""
    metrics = record.get("metrics") or {}
    usage = record.get("usage") or {}
    parts = [
        f"ttft {_fmt(metrics.get('ttft_s'), ' s')}",
        f"{_fmt(metrics.get('tokens_per_s'), ' tok/s', 1)}",
        f"{_fmt(metrics.get('duration_s'), ' s')}",
        f"{_fmt(usage.get('total_tokens'))} tokens",
    ]
    if record.get("stop_reason"):
        parts.append(str(record["stop_reason"]))
    if (record.get("attempts") or 1) > 1:
        parts.append(f"{record['attempts']} attempts")
    return " · ".join(parts)


def outcome(record: JSON | None) -> str:
    """The text shown for a cell that has no answer: missing, error or cancellation."""
    if record is None:
        return "not run yet"
    if record.get("status") == "error":
        error = record.get("error") or {}
        return f"error {error.get('code')}: {error.get('message')}"
    if record.get("status") == "cancelled":
        return f"cancelled ({record.get('cancel_reason')})"
    return ""


def _md(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r\n", "\n")
        .replace("\n", "<br>")
    )


def _heading(column: ReportColumn) -> str:
    return _md(column.label) + (f"<br>`{column.model}`" if column.model else "")


def render_markdown(report: Report) -> str:
    """The report as Markdown: summary table per agent, then prompts x agents."""
    out = [f"# {_md(report.title)}", ""]
    if report.partial:
        out += [f"_Partial results: {report.completed} of {report.planned} pairs._", ""]
    out += [
        "## Per agent",
        "",
        "| agent | model | success | median ttft | median tok/s | median duration | tokens | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in report.agents:
        errors = ", ".join(f"{code} x{n}" for code, n in a.errors.items()) or "-"
        out.append(
            f"| {_md(a.label)} | {_md(a.model or '-')} "
            f"| {a.succeeded}/{a.completed} ({_rate(a.success_rate)}) "
            f"| {_fmt(a.median_ttft_s, ' s')} | {_fmt(a.median_tokens_per_s, '', 1)} "
            f"| {_fmt(a.median_duration_s, ' s')} | {a.total_tokens} | {_md(errors)} |"
        )
    out += _markdown_grades(report) + _markdown_leaderboard(report)
    out += ["", "## Answers", ""]
    out.append("| prompt | " + " | ".join(_heading(c) for c in report.columns) + " |")
    out.append("|---" * (len(report.columns) + 1) + "|")
    for row in report.rows:
        name = f"**{_md(row.prompt_id)}**" + (f" #{row.repeat}" if row.repeat > 1 else "")
        cells = [f"{name}<br>{_md(row.prompt)}"]
        for column in report.columns:
            record = row.cells[column.agent]
            if record is not None and record.get("status") == "done":
                cells.append(f"{_md(str(record.get('text', '')))}<br>_{_md(figures(record))}_")
            else:
                cells.append(f"_{_md(outcome(record))}_")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _markdown_grades(report: Report) -> list[str]:
    if not report.graded:
        return []
    out = ["", "## Assertions", "", "| agent | passed | pass rate |", "|---|---|---|"]
    for a in report.agents:
        out.append(f"| {_md(a.label)} | {a.passed}/{a.checks} | {_rate(a.pass_rate)} |")
    return out


def _markdown_leaderboard(report: Report) -> list[str]:
    board = report.leaderboard
    if board is None:
        return []
    out = [
        "",
        "## Leaderboard",
        "",
        f"_{_md(str(board['method']))}; {board['n_votes']} votes._",
        "",
        "| # | agent | rating | 95% interval | wins | losses | ties |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(board["rows"], 1):
        out.append(
            f"| {n} | {_md(str(row['label']))} | {row['rating']:.0f} "
            f"| {row['ci_low']:.0f} - {row['ci_high']:.0f} "
            f"| {row['wins']:g} | {row['losses']:g} | {row['ties']:g} |"
        )
    return out


_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ report.title }}</title>
<style>
  :root { color-scheme: light dark; --line: #8884; --muted: #888; --bad: #c0392b; }
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem; }
  h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border: 1px solid var(--line); padding: .5rem .6rem; vertical-align: top; text-align: left; }
  th { background: #8881; }
  .answer { white-space: pre-wrap; }
  .figures { color: var(--muted); font-size: .85em; margin-top: .35rem; }
  .problem { color: var(--bad); font-style: italic; }
  .missing { color: var(--muted); font-style: italic; }
  .prompt-id { font-weight: 600; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>{{ report.title }}</h1>
<p id="counts">{{ report.completed }} of {{ report.planned }} pairs completed
{%- if report.partial %} (partial results){% endif %}.</p>

<h2>Per agent</h2>
<table id="agents">
<thead><tr><th>agent</th><th>model</th><th>success</th><th>median ttft</th><th>median tok/s</th>
<th>median duration</th><th>tokens</th><th>errors</th></tr></thead>
<tbody>
{%- for a in report.agents %}
<tr data-agent="{{ a.agent }}"><td>{{ a.label }}</td><td class="model">{{ a.model or '-' }}</td>
<td class="num">{{ a.succeeded }}/{{ a.completed }} ({{ rate(a.success_rate) }})</td>
<td class="num">{{ fmt(a.median_ttft_s, ' s') }}</td>
<td class="num">{{ fmt(a.median_tokens_per_s, '', 1) }}</td>
<td class="num">{{ fmt(a.median_duration_s, ' s') }}</td>
<td class="num">{{ a.total_tokens }}</td>
<td>{% for code, n in a.errors.items() %}{{ code }} x{{ n }}{% if not loop.last %}, {% endif %}{% else %}-{% endfor %}</td></tr>
{%- endfor %}
</tbody>
</table>

{%- if report.graded %}
<h2>Assertions</h2>
<table id="grades">
<thead><tr><th>agent</th><th>passed</th><th>pass rate</th></tr></thead>
<tbody>
{%- for a in report.agents %}
<tr data-agent="{{ a.agent }}"><td>{{ a.label }}</td><td class="num">{{ a.passed }}/{{ a.checks }}</td>
<td class="num">{{ rate(a.pass_rate) }}</td></tr>
{%- endfor %}
</tbody>
</table>
{%- endif %}
{%- if report.leaderboard %}
<h2>Leaderboard</h2>
<p class="figures">{{ report.leaderboard.method }}; {{ report.leaderboard.n_votes }} votes.</p>
<table id="leaderboard">
<thead><tr><th>#</th><th>agent</th><th>rating</th><th>95% interval</th><th>wins</th><th>losses</th><th>ties</th></tr></thead>
<tbody>
{%- for row in report.leaderboard.rows %}
<tr><td class="num">{{ loop.index }}</td><td>{{ row.label }}</td><td class="num">{{ '%.0f' % row.rating }}</td>
<td class="num">{{ '%.0f' % row.ci_low }} - {{ '%.0f' % row.ci_high }}</td>
<td class="num">{{ row.wins }}</td><td class="num">{{ row.losses }}</td><td class="num">{{ row.ties }}</td></tr>
{%- endfor %}
</tbody>
</table>
{%- endif %}

<h2>Answers</h2>
<table id="answers">
<thead><tr><th>prompt</th>
{%- for c in report.columns %}<th data-agent="{{ c.agent }}">{{ c.label }}{% if c.model %}<div class="model">{{ c.model }}</div>{% endif %}</th>{% endfor %}</tr></thead>
<tbody>
{%- for row in report.rows %}
<tr data-prompt="{{ row.prompt_id }}" data-repeat="{{ row.repeat }}">
<td><div class="prompt-id">{{ row.prompt_id }}{% if row.repeat > 1 %} #{{ row.repeat }}{% endif %}</div>
<div class="prompt">{{ row.prompt }}</div></td>
{%- for c in report.columns %}{% set r = row.cells[c.agent] %}
<td class="cell" data-agent="{{ c.agent }}" data-status="{{ r.status if r else 'missing' }}">
{%- if r and r.status == 'done' %}<div class="answer">{{ r.text }}</div><div class="figures">{{ figures(r) }}</div>
{%- elif r %}<div class="problem">{{ outcome(r) }}</div>
{%- else %}<div class="missing">{{ outcome(r) }}</div>{% endif %}</td>
{%- endfor %}
</tr>
{%- endfor %}
</tbody>
</table>
</body>
</html>
"""

_env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_env.globals.update(fmt=_fmt, rate=_rate, figures=figures, outcome=outcome)
_template = _env.from_string(_HTML)


def render_html(report: Report) -> str:
    """The report as one standalone HTML page (inline CSS, every agent text escaped)."""
    return _template.render(report=report)


def write_report(results_dir: Path | str, out_dir: Path | str | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``summary.json``; return their paths.

    They go into ``out_dir`` (default: the results directory). Works on partial results.
    Raises :class:`~orchestrator.ConfigError` when ``results_dir`` is not a results directory.
    """
    report = build_report(results_dir)
    target = Path(out_dir) if out_dir is not None else Path(results_dir)
    target.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": target / "report.md",
        "html": target / "report.html",
        "json": target / "summary.json",
    }
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    write_json_atomic(paths["json"], report.to_dict())
    return paths
