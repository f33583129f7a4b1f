"""Grep rules: named regular expressions whose matching lines (numbered) go into the note and the record.

A rule's `scope` is "file" (the file being processed, here) or "directory" (the file's whole bucket,
searched by `worker.tools.dirgrep` with ripgrep, GNU grep or Python, and cached across a burst).

The coordinator compiled every rule at start (an invalid one never reaches a worker); here each rule is
compiled once per CONFIG and run over the text the pipeline already holds, one `finditer` over the whole
text per rule (not one search per line), taking the first match of each line. Lines are counted as the
note counts them ("\\n"). A rule on a file too large to hold in memory is skipped and the note says so.
A pathological regex is bounded by the job's deadline, like any other slow file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.messages import GrepMatch, GrepRule, Recovery
from worker.tools.dirgrep import DirectoryGrep, matching_lines

#: Matches listed per rule and file (every match is counted).
MAX_MATCHES_PER_RULE = 50
#: Characters of a matching line kept.
MAX_LINE_CHARS = 200


@dataclass(frozen=True, slots=True)
class GrepResult:
    """What the rules found in one file: the listed matches, the match count per rule, and the tags of the
    rules that matched."""

    matches: list[GrepMatch]
    counts: dict[str, int]
    tags: list[str]
    recovery: Recovery | None = None  # a directory rule answered by a fallback tool, and why


class GrepRules:
    """The CONFIG's grep rules, compiled."""

    def __init__(self, rules: Iterable[GrepRule] = ()) -> None:
        # MULTILINE: "^" and "$" are line starts and ends, as in grep.
        self._rules = [(rule, re.compile(rule.regex, re.MULTILINE)) for rule in rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def scan(
        self,
        text: str | None,
        bucket: str,
        bucket_root: str | None = None,
        dirgrep: DirectoryGrep | None = None,
    ) -> GrepResult:
        """Run every rule that applies to `bucket`: file rules over `text` (None: not searchable), directory
        rules over `bucket_root` through `dirgrep`."""
        matches: list[GrepMatch] = []
        counts: dict[str, int] = {}
        tags: list[str] = []
        recovery: Recovery | None = None
        for rule, regex in self._rules:
            if rule.buckets and bucket not in rule.buckets:
                continue
            if rule.scope == "directory":
                if bucket_root is None or dirgrep is None:
                    continue
                found_dir = dirgrep.search(rule.regex, bucket_root)
                if found_dir.fallback_reason:
                    recovery = Recovery(fallback=found_dir.tool, reason=found_dir.fallback_reason)
                if found_dir.matches:
                    counts[rule.name] = len(found_dir.matches)
                    tags += rule.tags
                    matches += [
                        GrepMatch(rule=rule.name, line=m.line, text=m.text, path=m.path)
                        for m in found_dir.matches[:MAX_MATCHES_PER_RULE]
                    ]
                continue
            if text is None:
                continue
            found = matching_lines(regex, text)
            if not found:
                continue
            counts[rule.name] = len(found)
            tags += rule.tags
            for line, start, end in found[:MAX_MATCHES_PER_RULE]:
                matches.append(GrepMatch(rule=rule.name, line=line, text=text[start:end][:MAX_LINE_CHARS]))
        return GrepResult(matches, counts, list(dict.fromkeys(tags)), recovery)
