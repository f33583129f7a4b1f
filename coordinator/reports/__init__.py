"""Obsidian-flavored reports on the running service, written into `<state-dir>/reports/`.

| file | module | what |
| --- | --- | --- |
| `RUN_SUMMARY.md` | `run_summary` | run, buckets with file counts, processing, queue, errors, performance |
| `METRICS_SNAPSHOT.md` | `metrics_snapshot` | counters, gauges, histograms, rates, errors, alerts, capacity |
| `CONTEXT_TREE.md` | `context_tree` | index of the buckets' pages |
| `CONTEXT_TREE-<bucket>.md` | `context_tree` | one per bucket: tree, file statistics, grep counts, tags |
| `CONFIG_DUMP.md` | `config_dump` | every setting with its source (default, file, cli), validation, checks |

Every `render_*` function is pure (plain dicts and dataclasses in, markdown text out; no clock, no global
state), so the service decides when to write and the tests feed hand-built inputs. The only I/O is
`context_tree.walk_bucket` (a bounded walk of one bucket) and `markdown.write_report` (an atomic write).
`markdown` holds the escaping every report goes through: names from buckets are hostile.
"""

from coordinator.reports.markdown import write_report

__all__ = ["write_report"]
