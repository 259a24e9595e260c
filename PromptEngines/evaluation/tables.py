"""Result tables as markdown (README, model cards, bench scripts), and results on disk."""
from __future__ import annotations

import json
from pathlib import Path


def save_results(out, name: str, results: dict, plot=None) -> dict:
    """`results` as OUT/NAME.json and, given `plot(results, path)`, OUT/NAME.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    if plot is not None:
        plot(results, out / f"{name}.png")
    return results


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A header line, the separator line, then one line per row of already formatted cells."""
    lines = [_line(header), _line(["---"] * len(header))]
    lines += [_line(row) for row in rows]
    return "\n".join(lines)


def _line(cells) -> str:
    return "| " + " | ".join(cells) + " |"
