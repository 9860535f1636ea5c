"""Write a report as JSON, Markdown and HTML (the HTML shows the dashboards' PNGs)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from inferwatch.reports.tables import Table, tables, when

FORMATS = ("json", "md", "html")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;background:#111217;color:#ccccdc}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #2c3235;
padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}th{background:#181b1f}
img{max-width:100%;border:1px solid #2c3235;margin:.5em 0}code{color:#8ab8ff}
.note{color:#8e8e8e;font-size:12px}"""


def _heading(report: dict[str, Any]) -> str:
    w = report["figures"]["window"]
    return f"{when(w['start'])} to {when(w['end'])} UTC ({w['seconds']:.0f} s), job `{w['job']}`"


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Performance report", "", _heading(report), ""]
    for table in tables(report):
        lines += [f"## {table.title}", ""]
        if not table.rows:
            lines += ["None.", ""]
            continue
        lines.append("| " + " | ".join(table.headers) + " |")
        lines.append("|" + "---|" * len(table.headers))
        for row in table.rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        lines += (["", f"_{table.note}_"] if table.note else []) + [""]
        lines += [f"![{table.title}]({table.chart})", ""] if table.chart else []
    if report.get("charts"):
        lines += ["## Dashboards", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in report["charts"]] + [""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    escaped = html.escape(text)
    if text.startswith("`") and text.endswith("`"):
        return f"<code>{html.escape(text[1:-1])}</code>"
    return escaped.replace("**", "")


def _html_table(table: Table) -> str:
    parts = [f"<h2>{html.escape(table.title)}</h2>"]
    if not table.rows:
        return parts[0] + "<p>None.</p>"
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.headers))
    for row in table.rows:
        parts.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>")
    parts.append("</table>")
    if table.note:
        parts.append(f'<p class="note">{html.escape(table.note)}</p>')
    if table.chart:
        parts.append(f'<img src="{html.escape(table.chart)}" alt="{html.escape(table.title)}">')
    return "\n".join(parts)


def html_page(report: dict[str, Any]) -> str:
    body = [f"<h1>Performance report</h1><p>{_cell(_heading(report)).replace('`', '')}</p>"]
    body += [_html_table(t) for t in tables(report)]
    if report.get("charts"):
        body.append("<h2>Dashboards</h2>")
        body += [f'<img src="{html.escape(p)}" alt="{Path(p).stem}">' for p in report["charts"]]
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Performance report</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write(report: dict[str, Any], out_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"report.{fmt}"
        if fmt == "json":
            text = json.dumps(report, indent=2, sort_keys=True) + "\n"
        elif fmt == "md":
            text = markdown(report)
        else:
            text = html_page(report)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
