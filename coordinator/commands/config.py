"""`ob-ctl config --for FILE`: the `.bucket-include` rules the running service applies to a file, each
with the file and line it came from, in the order they are merged (most specific first).

Asked of the coordinator, so the answer is the live one: its buckets and global profile, and the rule files
as they are on disk now (the next file dispatched gets exactly these). FILE need not exist yet: the rules
depend only on its bucket and extension. The path is made absolute here, in `ob-ctl`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError, absolute_path
from coordinator.include_rules import explain_file

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "the .bucket-include rules that apply to a file (--for FILE), and where each came from"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The file asked about."""
    parser.add_argument(
        "--for", dest="for_file", type=absolute_path, required=True, metavar="FILE", help="a file in a bucket"
    )


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """The rules for `args["for_file"]`, or a one-line refusal when no bucket holds it."""
    path = args.get("for_file")
    if not isinstance(path, str) or not path.startswith("/"):
        raise CommandError("config: give --for FILE (an absolute path)")
    contexts = service.contexts
    try:
        result = explain_file(contexts.include, contexts.roots, path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    result["enabled"] = contexts.enabled
    return result


def render(result: dict[str, Any]) -> str:
    """The rule files looked up, then the merged rules with their sources, then any problems."""
    lines = [f"{result['file']}: bucket {result['bucket']}, {result['relpath']}"]
    if not result.get("enabled", True):
        lines.append("reading .bucket-include files is off (notes.bucket_include = false)")
    lines.append("rule files, most specific first:")
    lines += [f"  {'found  ' if f['exists'] else 'missing'} {f['path']}" for f in result["rule_files"]]
    if not result["applies"]:
        lines.append("no rule file applies: the note has no Related Context or Grep Results")
        return "\n".join(lines)
    lines.append("includes:" if result["includes"] else "includes: none (nothing is related)")
    lines += [f"  {r['pattern']}  ({r['where']})" for r in result["includes"]]
    lines.append("excludes:")
    lines += [f"  !{r['pattern']}  ({r['where']})" for r in result["excludes"]]
    lines.append("dirs:" if result["dirs"] else "dirs: none")
    for d in result["dirs"]:
        lines.append(f"  [dirs:{d['path']}]  ({d['where']})")
        lines += [f"    {p}" for p in d["patterns"]]
    if result["problems"]:
        lines.append("problems (these lines are skipped):")
        lines += [f"  {p}" for p in result["problems"]]
    return "\n".join(lines)
