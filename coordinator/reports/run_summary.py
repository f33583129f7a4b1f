"""RUN_SUMMARY.md: one page on the run so far: who, how long, how healthy, what each bucket holds, what was
processed, what is queued, what failed, and how fast.

`render_run_summary` is pure: it takes the `ob-ctl status` dict, a metrics snapshot (shape in
`coordinator.reports.snapshot`), per-bucket job counts and the newest ERROR rows, and returns the note's
text. Numbers are shown as given (nothing is recomputed from the filesystem), so the report agrees with
`ob-ctl status` and the snapshot it was made with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from coordinator.reports import snapshot as snap
from coordinator.reports.context_tree import context_tree_link
from coordinator.reports.markdown import (
    Cell,
    Md,
    code,
    front_matter,
    number,
    percent,
    seconds,
    table,
    tag_name,
    text,
    utc_iso,
    wikilink,
)
from coordinator.reports.snapshot import DEFAULT_NAMES, MetricNames

FILE_NAME = "RUN_SUMMARY.md"
#: The ERROR rows listed under "Last errors".
LAST_ERRORS = 5
#: The job states shown per bucket, in this order.
BUCKET_STATES = ("done", "failed", "quarantined", "queued")


def render_run_summary(
    *,
    run_id: str,
    started: datetime | float,
    generated: datetime | float,
    status: Mapping[str, Any],
    metrics: Mapping[str, Any],
    bucket_counts: Mapping[str, Mapping[str, int]] | None = None,
    recent_errors: Sequence[Mapping[str, Any]] = (),
    names: MetricNames = DEFAULT_NAMES,
) -> str:
    """The text of RUN_SUMMARY.md.

    - `run_id`: this run's id; `started`, `generated`: wall-clock times (epoch seconds or datetimes).
    - `status`: what `coordinator.commands.status.handle` returns (`health`, `reasons`, `pid`, `uptime_s`,
      `buckets` [{name, path, output}], `jobs` {state: n}, `parked` {bucket: n}, `workers` ...); missing
      keys show as "—".
    - `metrics`: a metrics snapshot (see `coordinator.reports.snapshot`); its metrics are looked up by
      `names`.
    - `bucket_counts`: jobs by state per bucket, `{bucket: {"done": n, "failed": n, "quarantined": n,
      "queued": n}}` (e.g. `SELECT bucket, state, count(*) FROM jobs GROUP BY bucket, state`); buckets no
      longer watched that still have jobs are listed too.
    - `recent_errors`: ERROR rows newest first, as `coordinator.queries.errors` returns them (`name`,
      `timestamp`, `category`, `severity`, `bucket`, `relpath`, `message`, `superseded`); the first five
      are listed, each linked to its record file.
    """
    counts = bucket_counts or {}
    health = status["health"] if isinstance(status.get("health"), str) else "unknown"
    uptime = _float(status.get("uptime_s"))
    jobs = {str(k): v for k, v in _mapping(status.get("jobs")).items() if isinstance(v, int)}
    processed = snap.counter(metrics, names.files_processed)
    successes = snap.counter(metrics, names.successes)
    failures = snap.counter(metrics, names.failures)
    health_tag = tag_name(f"health/{health}")
    front = front_matter(
        {
            "type": "open-buckets-run-summary",
            "run_id": run_id,
            "started": utc_iso(started),
            "generated": utc_iso(generated),
            "uptime_s": uptime,
            "health": health,
            "files_processed": processed,
            "successes": successes,
            "failures": failures,
            "jobs": jobs,
            "tags": ["openbuckets", "openbuckets/report", *([health_tag] if health_tag else [])],
        }
    )
    links = " · ".join(wikilink(n) for n in ("METRICS_SNAPSHOT", "CONTEXT_TREE", "CONFIG_DUMP"))
    body = [
        "# Run summary",
        "",
        f"Run {code(run_id)}, generated {utc_iso(generated)}. See also {links}.",
        "",
        *_run_section(run_id, started, uptime, status, health),
        *_buckets_section(status, counts),
        *_processing_section(metrics, names, processed, successes, failures),
        *_queue_section(jobs, _mapping(status.get("parked"))),
        *_errors_section(metrics, recent_errors),
        *_performance_section(metrics, names),
        "## See also",
        "",
        f"- {wikilink('METRICS_SNAPSHOT')}: every counter, gauge, histogram and rate, alerts, capacity",
        f"- {wikilink('CONTEXT_TREE')}: each bucket's files, grep matches and tags",
        f"- {wikilink('CONFIG_DUMP')}: the effective configuration and where each value came from",
    ]
    return front + "\n".join(body) + "\n"


def _run_section(
    run_id: str, started: datetime | float, uptime: float | None, status: Mapping[str, Any], health: str
) -> list[str]:
    rows: list[tuple[str, Cell]] = [
        ("Run id", code(run_id)),
        ("Started", utc_iso(started)),
        ("Uptime", None if uptime is None else f"{seconds(uptime)} ({number(uptime, 1)} s)"),
        ("Coordinator pid", _pid(status.get("pid"))),
        ("Health", Md(f"**{text(health)}**")),
    ]
    if status.get("dispatch"):
        rows.append(("Dispatch", str(status["dispatch"])))
    lines = ["## Run", "", *table(("Property", "Value"), rows), ""]
    reasons = [r for r in status.get("reasons") or () if isinstance(r, str)]
    if reasons:
        lines += ["Health reasons:", "", *(f"- {text(r, 500)}" for r in reasons), ""]
    return lines


def _buckets_section(status: Mapping[str, Any], counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    watched = [b for b in status.get("buckets") or () if isinstance(b, Mapping) and "name" in b]
    parked = _mapping(status.get("parked"))
    names = [str(b["name"]) for b in watched]
    gone = sorted({str(n) for n in (*counts, *parked)} - set(names))
    rows: list[list[Cell]] = []
    for bucket in watched:
        name = str(bucket["name"])
        rows.append(_bucket_row(name, bucket.get("path"), counts.get(name, {}), parked.get(name), True))
    for name in gone:
        rows.append(_bucket_row(name, None, counts.get(name, {}), parked.get(name), False))
    header = ("Bucket", "Path", *(s.capitalize() for s in BUCKET_STATES), "Parked", "Context tree")
    lines = ["## Buckets", ""]
    lines += [*table(header, rows), ""] if rows else ["No buckets.", ""]
    if gone:
        lines += ["Buckets without a path are no longer watched; their jobs are kept.", ""]
    return lines


def _bucket_row(name: str, path: Any, counts: Mapping[str, int], parked: Any, watched: bool) -> list[Cell]:
    states: list[Cell] = [_int(counts.get(state)) or 0 for state in BUCKET_STATES]
    return [
        code(name),
        code(path) if path is not None else None,
        *states,
        _int(parked) or 0,
        context_tree_link(name) if watched else None,
    ]


def _processing_section(
    metrics: Mapping[str, Any],
    names: MetricNames,
    processed: int | None,
    successes: int | None,
    failures: int | None,
) -> list[str]:
    finished = (successes or 0) + (failures or 0)
    rows: list[tuple[str, Cell]] = [
        ("Events received", snap.counter(metrics, names.events_received)),
        ("Events processed", snap.counter(metrics, names.events_processed)),
        ("Files processed", processed),
        ("Successes", successes),
        ("Failures", failures),
        ("Success rate", percent(successes or 0, finished)),
    ]
    return ["## Events and processing", "", *table(("Statistic", "Value"), rows), ""]


def _queue_section(jobs: Mapping[str, int], parked: Mapping[str, Any]) -> list[str]:
    lines = ["## Queue", ""]
    if jobs:
        rows: list[tuple[Cell, Cell]] = [(state, n) for state, n in jobs.items()]
        rows.append((Md("**total**"), sum(jobs.values())))
        lines += [*table(("State", "Jobs"), rows), ""]
    else:
        lines += ["No job counts.", ""]
    held = {str(k): n for k, v in parked.items() if (n := _int(v))}
    if held:
        lines += ["Parked (queued, held back):", ""]
        lines += [f"- {code(bucket)}: {n:,}" for bucket, n in sorted(held.items())]
        lines.append("")
    else:
        lines += ["Parked: none.", ""]
    return lines


def _errors_section(metrics: Mapping[str, Any], recent: Sequence[Mapping[str, Any]]) -> list[str]:
    by_category = snap.errors_by_category(metrics)
    total = sum(by_category.values())
    lines = ["## Errors", ""]
    if by_category:
        rows: list[list[Cell]] = [
            [code(c), snap.severity(c), n, percent(n, total)] for c, n in by_category.items()
        ]
        lines += ["By category:", "", *table(("Category", "Severity", "Count", "Share"), rows), ""]
        by_severity = snap.errors_by_severity(by_category)
        lines += ["By severity:", "", *table(("Severity", "Count"), list(by_severity.items())), ""]
    else:
        lines += ["No errors counted.", ""]
    shown = [r for r in recent if isinstance(r, Mapping)][:LAST_ERRORS]
    if shown:
        header = ("Time", "Category", "Severity", "Bucket", "File", "Message", "Record")
        title = "Last error:" if len(shown) == 1 else f"Last {len(shown)} errors (newest first):"
        lines += [title, "", *table(header, map(_error_row, shown)), ""]
    return lines


def _error_row(row: Mapping[str, Any]) -> list[Cell]:
    when = _float(row.get("timestamp"))
    name = row.get("name")
    record: Cell = wikilink(str(name)) if name else None
    if record is not None and row.get("superseded"):
        record = Md(f"{record} (superseded)")
    return [
        utc_iso(when) if when is not None else None,
        code(row["category"]) if row.get("category") else None,
        str(row["severity"]) if row.get("severity") else None,
        code(row["bucket"]) if row.get("bucket") is not None else None,
        code(row["relpath"]) if row.get("relpath") is not None else None,
        str(row["message"]) if row.get("message") else None,
        record,
    ]


def _performance_section(metrics: Mapping[str, Any], names: MetricNames) -> list[str]:
    def per_s(window: str) -> str:
        value = snap.rate(metrics, names.files_rate, window)
        return "—" if value is None else f"{number(value, 2)} files/s"

    def hist(name: str, field: str) -> str:
        return seconds(snap.stat(metrics, "histograms", name, field))

    rows: list[tuple[str, Cell]] = [
        ("Files/s, last 1 min", per_s("1m")),
        ("Files/s, last 5 min", per_s("5m")),
        ("Files/s, last 15 min", per_s("15m")),
        ("Processing time p50", hist(names.processing_time, "p50")),
        ("Processing time p95", hist(names.processing_time, "p95")),
        ("Processing time p99", hist(names.processing_time, "p99")),
        ("Queue wait p95", hist(names.queue_wait, "p95")),
    ]
    return ["## Performance", "", *table(("Measure", "Value"), rows), ""]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pid(value: Any) -> Cell:
    # A pid is an identifier, not a quantity: no thousands separator.
    pid = _int(value)
    return None if pid is None else Md(str(pid))


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
