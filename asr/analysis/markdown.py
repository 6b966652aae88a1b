"""Markdown tables, as the analyses write them into results.md."""

from __future__ import annotations

from typing import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], label_columns: int = 1) -> str:
    """A pipe table; columns after the first `label_columns` hold numbers and are right-aligned."""
    rule = ["---"] * label_columns + ["---:"] * (len(header) - label_columns)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])
