"""Result tables as markdown (README, model cards, bench scripts)."""
from __future__ import annotations


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A header line, the separator line, then one line per row of already formatted cells."""
    lines = [_line(header), _line(["---"] * len(header))]
    lines += [_line(row) for row in rows]
    return "\n".join(lines)


def _line(cells) -> str:
    return "| " + " | ".join(cells) + " |"
