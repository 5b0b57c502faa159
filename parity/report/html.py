"""Blocks -> one self-contained HTML page: inline CSS, figures as data URIs, no script, nothing
fetched."""
from __future__ import annotations

import base64
from html import escape

from .document import Figure, Heading, Para, Table

CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:12.5px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fdecea}img{max-width:100%}code{font-size:12px}
"""


def _md_code(text: str) -> str:
    """`code` spans of the shared text -> <code>, everything else escaped."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    body = []
    for i, row in enumerate(t.rows):
        text = [escape(str(c)) for c in row]
        if i < len(t.links) and t.links[i]:
            text[0] = f'<a href="{escape(t.links[i])}">{text[0]}</a>'
        cells = "".join(f"<td{' class=n' if j in t.right else ''}>{c}</td>" for j, c in enumerate(text))
        body.append(f"<tr{' class=bad' if i in t.bad else ''}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render(blocks: list, figures: dict[str, bytes], title: str) -> str:
    """``figures``: figure key -> PNG bytes."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_md_code(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(table(b))
        elif isinstance(b, Figure) and b.key in figures:
            out.append(f'<p><img alt="{escape(b.alt)}" src="{data_uri(figures[b.key])}"></p>')
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(out) + "\n</body></html>\n")
