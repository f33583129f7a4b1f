"""Text skills: plain text, and markdown (front matter, headings, `[[links]]`, `#tags`).

Plain text needs nothing beyond what the pipeline already counted (lines, words, its Content); its skill
adds the longest line, which is what tells a log from a minified blob. Markdown is read line by line with
fenced code skipped, so a heading or tag inside a code sample is not taken for one.
"""

from __future__ import annotations

import re

from worker.skills import md
from worker.skills.base import Section, SkillInput, SkillOutput

# The title is cut with rstrip, not by the regex: "(.+?)[ \t#]*$" backtracks quadratically on a line of
# spaces that ends in something else.
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*)$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# [[target]], [[target|alias]], [[target#heading]]: the target is what Obsidian links to.
_WIKILINK = re.compile(r"\[\[([^\[\]|#\n]{1,200})(?:[#|][^\[\]\n]{0,200})?\]\]")
# [text](target): inline links, targets without spaces.
_MDLINK = re.compile(r"\[[^\]\n]{0,200}+\]\(([^()\s]{1,500}+)\)")
# #tag as Obsidian reads it: after a space or line start, letters/digits/_/-//, not only digits.
_TAG = re.compile(r"(?:^|(?<=\s))#([\w/-]{1,100})", re.UNICODE)


def text_skill(inp: SkillInput) -> SkillOutput:
    """Plain text: the longest line (the pipeline has counted lines and words already)."""
    text = inp.text
    if text is None:
        return SkillOutput(fields={"longest_line": None})
    longest = max((len(line) for line in text.splitlines()), default=0)
    return SkillOutput(fields={"longest_line": longest})


def markdown_skill(inp: SkillInput) -> SkillOutput:
    """Headings, links and tags of a markdown file, and the keys of its YAML front matter."""
    text = inp.text
    if text is None:
        return SkillOutput(fields={"parsed": False})
    lines = text.splitlines()
    front_keys, body_start = _front_matter(lines)
    headings: list[tuple[int, str]] = []
    wikilinks: list[str] = []
    links: list[str] = []
    tags: list[str] = []
    fence: str | None = None
    for line in lines[body_start:]:
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        heading = _HEADING.match(line)
        if heading and (title := heading.group(2).rstrip(" \t#")):
            headings.append((len(heading.group(1)), title))
        wikilinks += _WIKILINK.findall(line)
        links += _MDLINK.findall(line)
        tags += [t for t in _TAG.findall(line) if not t.isdigit()]
    limit = inp.limits.max_list_items
    out = SkillOutput(
        fields={
            "headings": len(headings),
            "wikilinks": len(wikilinks),
            "links": len(links),
            "tags": len(set(tags)),
            "front_matter": len(front_keys) if front_keys is not None else None,
        },
    )
    if headings:
        # Nested by level: the indent goes before the dash, so markdown reads it as a sub-list.
        outline = [f"{'  ' * (level - 1)}- {md.inline(title)}" for level, title in headings[:limit]]
        if len(headings) > limit:
            outline.append(f"- … and {len(headings) - limit:,} more")
        out.sections.append(Section("Outline", outline))
    if front_keys:
        items = [md.code(k) for k in front_keys]
        out.sections.append(Section("Front matter", md.bullets(items, len(front_keys), limit)))
    if wikilinks or links:
        unique = list(dict.fromkeys([*(f"[[{w.strip()}]]" for w in wikilinks), *links]))
        items = [md.inline(u) if u.startswith("[[") else md.code(u) for u in unique]
        out.sections.append(Section("Links", md.bullets(items, len(unique), limit)))
    if tags:
        unique_tags = list(dict.fromkeys(tags))
        items = [md.code(f"#{t}") for t in unique_tags]
        out.sections.append(Section("Tags", md.bullets(items, len(unique_tags), limit)))
    return out


def _front_matter(lines: list[str]) -> tuple[list[str] | None, int]:
    """The top-level keys of a leading `---` YAML block, and the index of the first body line. Keys are
    read as `key:` at column 0; we never run a YAML parser on untrusted input."""
    if not lines or lines[0].strip() != "---":
        return None, 0
    keys: list[str] = []
    for i, line in enumerate(lines[1:], 1):
        if line.strip() in ("---", "..."):
            return keys, i + 1
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            keys.append(line.split(":", 1)[0].strip())
        if i > 1000:
            break
    return None, 0  # no closing line: not front matter after all
