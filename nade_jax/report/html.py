"""The self-contained HTML page of ``nade-report``: inline CSS, images as base64 PNG data
URIs, no script, no font and no URL to fetch, so it opens offline and can be mailed."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nade_jax.report.cli import Run


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px;
margin-top: 32px; } h3 { font-size: 15px; margin: 22px 0 6px; }
.meta { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 12px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ref td { color: #666; font-style: italic; }
figure { margin: 8px 0 18px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12.5px; color: #555; max-width: 900px; }
.findings li { margin: 3px 0; }
.samples { display: flex; flex-wrap: wrap; gap: 10px; }
.samples figure { margin: 0; width: 270px; } .samples img { width: 100%; }
.bad { color: #a33; } .skipped { color: #777; }
"""


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _fmt(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and value == value else "–"


def render_html(root: Path, runs: list[Run], problems: list[Run], sections: list[dict[str, Any]], out: Path) -> str:
    esc = html.escape
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Orderings report: {esc(str(root))}'
        f"</title><style>{STYLE}</style></head><body>",
        f'<h1>Orderings report</h1><div class="meta">{esc(str(root))}: {len(runs)} run dirs, '
        f"{len(runs) - len(problems)} finished and plotted, {len(problems)} left out"
        f"{' (listed at the end)' if problems else ''}. Test NLL in nats per example, lower is better.</div>",
    ]
    for section in sections:
        parts.append(f"<h2>{esc(section['data'])}</h2>")
        if section["findings"]:
            parts.append('<ul class="findings">' + "".join(f"<li>{esc(f)}</li>" for f in section["findings"]) + "</ul>")
        parts.append(
            "<table><tr><th>model · ordering</th><th>test NLL mean ± sd</th><th>seeds</th><th>per seed</th></tr>"
        )
        parts.extend(
            f'<tr><td>{esc(row["label"])}</td><td class="num">{_fmt(row["mean"])} ± {_fmt(row["sd"])}</td>'
            f'<td class="num">{len(row["values"])}</td><td class="num">'
            + ", ".join(_fmt(v) for v in row["values"])
            + "</td></tr>"
            for row in section["rows"]
        )
        for name, value in section["refs"].items():
            parts.append(
                f'<tr class="ref"><td>{esc(name)} (reference)</td><td class="num">{_fmt(value)}</td>'
                f"<td></td><td></td></tr>"
            )
        parts.append("</table>")
        for title, path, caption in section["figures"]:
            parts.append(f"<h3>{esc(title)}</h3><figure>{_image(path)}<figcaption>{esc(caption)}</figcaption></figure>")
        if section.get("samples"):
            parts.append('<h3>Samples</h3><div class="samples">')
            for caption, path in section["samples"]:
                parts.append(f"<figure>{_image(path)}<figcaption>{esc(caption)}</figcaption></figure>")
            parts.append("</div>")
    if problems:
        parts.append("<h2>Runs left out of the figures</h2><table><tr><th>run</th><th>status</th><th>reason</th></tr>")
        for run in problems:
            css = "skipped" if run.status == "skipped" else "bad"
            parts.append(
                f'<tr class="{css}"><td>{esc(run.dir.name)}</td><td>{esc(run.status)}</td>'
                f"<td>{esc(run.reason or '')}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
