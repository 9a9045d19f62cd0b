"""Side-by-side comparison reports (Markdown, HTML, JSON) of a batch run's results."""

from __future__ import annotations

from ._build import Report as Report
from ._build import build_report as build_report
from ._render import render_html as render_html
from ._render import render_markdown as render_markdown
from ._render import write_report as write_report

__all__ = ["Report", "build_report", "render_html", "render_markdown", "write_report"]
