"""Blocks -> Markdown (GitHub tables; figures as PNG files beside the report)."""
from __future__ import annotations

from .document import Figure, Heading, Para, Table


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    align = ["---:" if i in t.right else "---" for i in range(len(t.header))]
    lines = ["| " + " | ".join(_cell(h) for h in t.header) + " |", "|" + "|".join(align) + "|"]
    for i, row in enumerate(t.rows):
        cells = [_cell(c) for c in row]
        if i < len(t.links) and t.links[i]:
            cells[0] = f"[{cells[0]}]({t.links[i]})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(blocks: list, figures: dict[str, str]) -> str:
    """``figures``: figure key -> the PNG's path relative to the Markdown file."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(table(b))
        elif isinstance(b, Figure) and b.key in figures:
            out.append(f"![{b.alt}]({figures[b.key]})")
    return "\n\n".join(out) + "\n"
