"""One document model of the report, rendered to a self-contained HTML page (a Jinja2
template: inline CSS, images as base64 PNG data URIs, no script, font or URL, so it opens
offline and can be mailed) and to markdown (images as links to the PNGs beside it), from
the same ``Document``.

A ``Document`` is a title, a one-line summary and ``Section``s; a section is a list of blocks:
``Bullets``, ``Table``, ``Figure`` or ``Gallery``. A new part of the report is a new block in
``build.py``; both renderers show it without change. Text is escaped by the renderers (HTML
autoescape; markdown table cells), so values read from a run dir are never markup.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import jinja2

from nade_jax.report.files import read_bytes


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclasses.dataclass(frozen=True)
class Table:
    """``header``: column names; ``rows``: cells as text; ``numeric``: indices of right-aligned
    columns; ``row_styles``: a CSS class per row ("" for none; "ref", "bad", "skipped")."""

    header: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()
    row_styles: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class Figure:
    """A PNG with its title and caption; ``file``: its name in the output dir, None for an
    image shown only inline (a run's own sample grid)."""

    title: str
    caption: str
    png: bytes
    file: str | None = None

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Gallery:
    title: str
    figures: list[Figure]


Block = Bullets | Table | Figure | Gallery


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


@dataclasses.dataclass(frozen=True)
class Document:
    title: str
    subject: str  # what the report is of (the sweep dir)
    summary: str
    sections: list[Section]


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
ul.bullets li { margin: 3px 0; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure { margin: 0; width: 270px; } .gallery img { width: 100%; }
.bad { color: #a33; } .skipped { color: #777; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ doc.title }}: {{ doc.subject }}</title>
<style>{{ style }}</style></head><body>
<h1>{{ doc.title }}</h1>
<div class="meta">{{ doc.subject }}: {{ doc.summary }}</div>
{% macro figure(item) -%}
<figure><img alt="{{ item.title }}" src="{{ item.data_uri }}"><figcaption>{{ item.caption }}</figcaption></figure>
{%- endmacro %}
{% for section in doc.sections %}
<h2>{{ section.title }}</h2>
{% for block in section.blocks %}
{% if block is bullets %}
<ul class="bullets">{% for item in block.items %}<li>{{ item }}</li>{% endfor %}</ul>
{% elif block is table %}
<table><tr>{% for name in block.header %}<th>{{ name }}</th>{% endfor %}</tr>
{% for row in block.rows %}{% set style = block.row_styles[loop.index0] if block.row_styles else "" %}
<tr{% if style %} class="{{ style }}"{% endif %}>
{%- for cell in row %}<td{% if loop.index0 in block.numeric %} class="num"{% endif %}>{{ cell }}</td>{% endfor -%}
</tr>
{% endfor %}</table>
{% elif block is figure %}
<h3>{{ block.title }}</h3>{{ figure(block) }}
{% elif block is gallery %}
<h3>{{ block.title }}</h3><div class="gallery">
{% for item in block.figures %}{{ figure(item) }}
{% endfor %}</div>
{% endif %}
{% endfor %}
{% endfor %}
</body></html>
"""


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    for kind in (Bullets, Table, Figure, Gallery):
        environment.tests[kind.__name__.lower()] = lambda value, kind=kind: isinstance(value, kind)
    return environment


_TEMPLATE = _environment().from_string(TEMPLATE)


def to_html(document: Document) -> str:
    """The self-contained page: every image inline, every text escaped."""
    return _TEMPLATE.render(doc=document, style=STYLE)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def to_markdown(document: Document) -> str:
    """The same document as markdown; figures link their ``file`` (inline-only images are
    listed by title)."""
    lines = [f"# {document.title}: {document.subject}", "", document.summary, ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Bullets):
                lines += [f"- {_cell(item)}" for item in block.items] + [""]
            elif isinstance(block, Table):
                lines.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                lines += [f"### {block.title}", ""]
                lines += [f"![{_cell(block.title)}]({block.file})" if block.file else block.title, ""]
                lines += [block.caption, ""]
            else:
                lines += [f"### {block.title}", ""]
                lines += [f"- {_cell(f.caption)}" for f in block.figures] + [""]
    return "\n".join(lines)


def figure_from_file(title: str, caption: str, path: Path) -> Figure:
    """A figure of a PNG this report wrote into its output dir (linked from the markdown)."""
    return Figure(title, caption, read_bytes(Path(path)), Path(path).name)
