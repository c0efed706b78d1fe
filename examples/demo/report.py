"""The demo's tables: plain-text rendering and the "seed claim vs measured" rows.

The benchmarks print their tables with :func:`format_table` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .builds import BuildResult

__all__ = ["format_table", "results_table"]


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, text_columns: int = 1
) -> str:
    """Render a plain-text table: the first ``text_columns`` left-aligned, the rest right."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append(
            "  ".join(
                c.ljust(w) if i < text_columns else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _fewer(naive: float, ours: float) -> str:
    if naive <= 0:
        return "-"
    return f"{100 * (1 - ours / naive):.0f}% fewer"


def results_table(naive: BuildResult, ours: BuildResult) -> list[list[str]]:
    """Rows of "seed claim vs measured": metric, claim, naive, seerrperf, change, verdict."""
    rows: list[list[str]] = []
    for label, q in (("p50 latency ms", 50), ("p99 latency ms", 99)):
        theirs, mine = naive.percentile(q), ours.percentile(q)
        faster = 100 * (1 - mine / theirs) if theirs else 0.0
        rows.append(
            [
                label,
                "30-50% faster under load",
                f"{theirs:,.1f}",
                f"{mine:,.1f}",
                f"{faster:.0f}% faster",
                "met" if faster >= 30 else "NOT met",
            ]
        )
    rows.append(
        [
            "throughput req/s",
            "(paced load)",
            f"{naive.throughput:,.0f}",
            f"{ours.throughput:,.0f}",
            f"{ours.throughput / naive.throughput:.1f}x" if naive.throughput else "-",
            "",
        ]
    )
    theirs_conns, our_conns = naive.server_connections, ours.server_connections
    if theirs_conns is None or our_conns is None:
        rows.append(["server connections opened", "60-80% fewer", "n/a", "n/a", "", ""])
    else:
        rows.append(
            [
                "server connections opened",
                "60-80% fewer",
                f"{theirs_conns:,}",
                f"{our_conns:,}",
                _fewer(theirs_conns, our_conns),
                "met" if our_conns <= 0.4 * theirs_conns else "NOT met",
            ]
        )
    rows.append(
        [
            "TMDB upstream calls",
            "20-30% fewer",
            f"{naive.tmdb_calls:,}",
            f"{ours.tmdb_calls:,}",
            _fewer(naive.tmdb_calls, ours.tmdb_calls),
            "met" if ours.tmdb_calls <= 0.8 * naive.tmdb_calls else "NOT met",
        ]
    )
    rows.append(
        [
            "duplicate requests (rows)",
            "none (lock + unique index)",
            f"{naive.duplicates:,}",
            f"{ours.duplicates:,}",
            "",
            "met" if ours.duplicates == 0 else "NOT met",
        ]
    )
    rows.append(
        [
            "cache hit rate",
            "(not claimed)",
            "no cache" if naive.cache_hit_rate is None else f"{naive.cache_hit_rate:.0%}",
            "no cache" if ours.cache_hit_rate is None else f"{ours.cache_hit_rate:.0%}",
            "",
            "",
        ]
    )
    rows.append(
        [
            "errors (5xx, transport)",
            "(none expected)",
            f"{naive.errors:,}",
            f"{ours.errors:,}",
            "",
            "met" if ours.errors == 0 else "NOT met",
        ]
    )
    return rows
