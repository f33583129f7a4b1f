"""`ob-ctl errors stats [--since 24h]`: the error tracker's aggregates (`coordinator.error_stats`), read from
the records index in this process, so it works with the service stopped."""

from __future__ import annotations

import argparse
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from coordinator import queries
from coordinator.commands import common
from coordinator.commands.table import human_seconds, human_time, render_table
from coordinator.error_stats import error_stats

HELP = "ERROR records counted by category, severity, component and bucket, open vs resolved, and a trend"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--since (also accepted before `stats`: `ob-ctl errors --since 1h stats`)."""
    # SUPPRESS: a value `errors` itself parsed is kept rather than overwritten by this parser's default.
    parser.add_argument(
        "--since",
        type=common.duration,
        metavar="DURATION",
        default=argparse.SUPPRESS,
        help="only this recent: 30s, 15m, 1h, 2d (default: all; the trend then covers 24h)",
    )


def local(state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The aggregates, read in this process."""
    now = time.time()
    ago = getattr(args, "since", None)  # (always set under `errors`, which has its own --since)
    since = None if ago is None else now - ago
    with closing(queries.open_queue(state_dir)) as conn:
        return error_stats(conn, now=now, since=since)


def render(stats: dict[str, Any]) -> str:
    """A headline, the counts as small tables, and the trend as one line of counts."""
    window = "all time" if stats["since"] is None else f"since {human_time(stats['since'])}"
    lines = [
        f"{stats['total']} errors ({window}): {stats['open']} open, {stats['resolved']} resolved, "
        f"{stats['superseded']} superseded by a retry"
    ]
    if not stats["total"]:
        return lines[0]
    by_category = stats["by_category"]
    share = stats["distribution"]
    lines += ["", render_table(["category", "count", "share"], _rows(by_category, share))]
    for title in ("severity", "component", "bucket"):
        lines += ["", render_table([title, "count"], _rows(stats[f"by_{title}"]))]
    trend = stats["trend"]
    lines += [
        "",
        f"trend from {human_time(trend['start'])}, per {human_seconds(trend['bin_s'])}: "
        + " ".join(str(n) for n in trend["counts"]),
    ]
    return "\n".join(lines)


def _rows(counts: dict[str, int], share: dict[str, float] | None = None) -> list[list[object]]:
    if share is None:
        return [[name, n] for name, n in counts.items()]
    return [[name, n, f"{share[name]:.0%}"] for name, n in counts.items()]
