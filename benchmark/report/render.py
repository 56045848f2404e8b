"""One table renderer for every output: a header and rows of cells in; Markdown, CSV, LaTeX
(booktabs) or HTML out. Reports build their rows once and pick the format here."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Sequence
from typing import Any

Row = Sequence[Any]


def markdown(header: Sequence[str], rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table; short rows are padded with empty cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_padded(row, len(header))) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Sequence[Row]) -> str:
    """CSV with raw values (numbers stay numbers; None is an empty field)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def html_table(header: Sequence[str], rows: Sequence[Row]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _padded(row, len(header))) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def tex_escape(text: str) -> str:
    return re.sub(r"([_&%#$])", r"\\\1", text).replace("[", "{[}").replace("]", "{]}")


def latex(
    header: Sequence[str],
    rows: Sequence[Row],
    caption: str,
    left_columns: int,
    bold: frozenset[tuple[int, int]] = frozenset(),
) -> str:
    """A booktabs table: the first ``left_columns`` columns left-aligned, the rest right;
    cells at the (row, column) positions in ``bold`` in bold."""
    lines = [
        "\\begin{table}[t]",
        "\\centering\\small",
        f"\\caption{{{tex_escape(caption)}}}",
        "\\begin{tabular}{" + "l" * left_columns + "r" * (len(header) - left_columns) + "}",
        "\\toprule",
        " & ".join(tex_escape(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(rows):
        cells = [tex_escape(c) for c in _padded(row, len(header))]
        cells = [f"\\textbf{{{c}}}" if (i, j) in bold else c for j, c in enumerate(cells)]
        lines.append(" & ".join(cells) + " \\\\")
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}", "\\end{table}"])


def _padded(row: Row, width: int) -> list[str]:
    cells = [str(c) for c in row]
    return cells + [""] * (width - len(cells))
