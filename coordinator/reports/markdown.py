"""Safe Obsidian markdown for the reports: front matter, text, code, tables, links, tags, and the writer.

Everything a report shows may come from a bucket (file names, extensions), from a record (error messages)
or from the config (bucket and rule names), so no string goes into a report unescaped. The rules mirror the
worker's notes (`worker/skills/md.py`, `worker/pipeline/note.py`; the coordinator never imports `worker/`,
so they are repeated here and a test keeps the link rule equal to the notes'):

- **front matter**: every string is JSON-quoted (JSON is a subset of YAML 1.2), with the characters YAML
  will not take raw escaped as `\\uXXXX`; keys that are not plain identifiers are quoted too, and floats
  always carry a "." so YAML 1.1 readers (PyYAML) read a float, not a string;
- **one line of body**: control characters and line separators become spaces, lone surrogates (undecodable
  bytes of a file name) U+FFFD; long strings are cut with "…";
- **text** (`text`): the above, then a backslash before every character markdown or Obsidian gives a meaning
  to mid-line (emphasis, links, embeds, `#tags`, `==highlight==`, `%%comments%%`, `$math$`, HTML, ...);
- **code** (`code`): an inline code span whose fence outgrows every backtick run inside, so nothing in it
  is markdown at all; file names are shown this way, as in the notes;
- **table cells** (`table`): a pipe always ends up behind an odd number of backslashes, because GFM
  splits a row before it parses inlines and pairs backslashes (`\\\\|` is an escaped backslash and a cell
  border);
- **wikilinks** (`wikilink`): the target loses what Obsidian cannot hold in one (`[ ] | # ^ \\`, line
  breaks), the alias loses `[ ] |`;
- **tags** (`tag_name`): lower case, `[a-z0-9_/-]` only, as the notes make them.

A fragment that is already safe markdown is an `Md` (a `str` subclass): tables and joins put it in as is,
while a plain `str` is always escaped as text.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

#: Longest string shown in one cell or list item; longer ones are cut with an ellipsis.
MAX_ITEM_CHARS = 200

# In one line of the body: control characters and line separators (→ space), lone surrogates (→ U+FFFD).
_BODY_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Characters with a meaning mid-line in CommonMark, GFM or Obsidian. CommonMark lets any ASCII punctuation
# be backslash-escaped, so escaping one that needed nothing costs nothing but a backslash.
_TEXT_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~=$%^&!{}])")
_BACKTICKS = re.compile("`+")
# Characters JSON leaves raw but YAML does not allow raw in a double-quoted scalar (or reads as line
# breaks): DEL, the C1 controls, the Unicode line/paragraph separators, BOM, non-characters, and lone
# surrogates. The same set as the notes' front matter.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
# A key YAML reads as a plain string: an identifier that no YAML 1.1 reader takes for a boolean or null.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_TAG_UNSAFE = re.compile(r"[^a-z0-9_/-]+")
# What a wikilink target cannot hold (Obsidian: [ ] | # ^ and line breaks) plus controls, as in the notes;
# and the backslash, which in a table would escape the pipe before an alias.
_WIKILINK_UNSAFE = re.compile(r"[\[\]|#^\\\x00-\x1f\x7f]+")
_ALIAS_UNSAFE = re.compile(r"[\[\]|\\]+")
# A run of backslashes, then a pipe: see `_escape_pipes`.
_PIPE = re.compile(r"(\\*)\|")
# What a file name in the reports dir may not hold (besides the link rule): path separators.
_FILE_UNSAFE = re.compile(r"[/\\]+")
#: Longest file-name stem (in UTF-8 bytes) before it is cut and given a hash (255 is the usual limit).
_MAX_STEM_BYTES = 200


class Md(str):
    """A markdown fragment that is already safe: put into tables and lines as it is."""

    __slots__ = ()


Cell = str | int | float | bool | None
"""What a table cell may be given: `Md` as is, `str` as escaped text, numbers formatted, None as "—"."""


# -- one line -------------------------------------------------------------------------------------------


def inline(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """`text` as one line with no control characters and valid UTF-8, cut to `limit` characters."""
    safe = _BODY_UNSAFE.sub(lambda m: "\ufffd" if m.group() >= "\ud800" else " ", text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def text(value: object, limit: int = MAX_ITEM_CHARS) -> Md:
    """Any value as plain text in one line: nothing in it is read as markdown (cut before escaping, so a
    cut never splits an escape); an `Md` is already safe and stays as it is."""
    if isinstance(value, Md):
        return value
    return Md(_TEXT_SPECIAL.sub(r"\\\1", inline(str(value), limit)))


def code(value: object, limit: int = MAX_ITEM_CHARS) -> Md:
    """Any value as an inline code span: the fence outgrows every backtick run inside it."""
    safe = inline(str(value), limit)
    longest = max((len(run) for run in _BACKTICKS.findall(safe)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space at each end of a span, so pad when the text itself starts or ends with a
    # backtick (it would join the fence) or is blank.
    pad = " " if safe.startswith("`") or safe.endswith("`") or not safe.strip() else ""
    return Md(f"{fence}{pad}{safe}{pad}{fence}")


def fenced(lines: Sequence[str], language: str = "") -> list[str]:
    """A fenced code block of `lines` (each made one safe line) that no line can close early."""
    safe = [inline(line, limit=1000) for line in lines]
    longest = max((len(run) for line in safe for run in _BACKTICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", *safe, fence]


# -- links and tags -------------------------------------------------------------------------------------


def link_target(name: str) -> str:
    """`name` as a wikilink target: what Obsidian cannot hold in a target becomes "-" (the notes' rule,
    applied first so a bucket's link here is the one its notes make), then the rest of `inline`."""
    return inline(_WIKILINK_UNSAFE.sub("-", name), limit=1000) or "-"


def wikilink(target: str, alias: str | None = None) -> Md:
    """`[[target]]` or `[[target|alias]]`, both sanitized: no name can close the link or add a second one."""
    safe = link_target(target)
    if alias is None:
        return Md(f"[[{safe}]]")
    shown = _ALIAS_UNSAFE.sub("-", inline(alias)).strip() or safe
    return Md(f"[[{safe}|{shown}]]")


def tag_name(name: str) -> str | None:
    """`name` as an Obsidian tag without its "#" (as the notes make them: lower case, `[a-z0-9_/-]`), or
    None when nothing usable is left."""
    return _TAG_UNSAFE.sub("-", name.lower()).strip("-") or None


def tag(name: str) -> Md | None:
    """`#name` as a sanitized Obsidian tag, or None when nothing usable is left."""
    safe = tag_name(name)
    return Md(f"#{safe}") if safe else None


def report_file_name(stem: str) -> str:
    """`<stem>.md` for a name that may come from a bucket: the wikilink rule (so `[[stem]]` finds the
    file), no path separators, and at most 200 bytes (a cut stem ends with a hash of the whole name so
    two long names never share a file)."""
    safe = _FILE_UNSAFE.sub("-", link_target(stem))
    if len(safe.encode("utf-8", "surrogatepass")) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(stem.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        cut = safe.encode("utf-8", "surrogatepass")[: _MAX_STEM_BYTES - 13].decode("utf-8", "ignore")
        safe = f"{cut}-{digest}"
    return f"{safe}.md"


# -- tables ---------------------------------------------------------------------------------------------


def cell(value: Cell, limit: int = MAX_ITEM_CHARS) -> str:
    """One table cell: `Md` kept (in one line, pipes escaped), other strings escaped as text, numbers
    formatted (`1,234`, `0.5`), booleans yes/no, None "—"."""
    if isinstance(value, Md):
        # Never cut a fragment (a cut could split a code span or a link): its parts were cut when made.
        return _escape_pipes(inline(value, limit=len(value) + 1))
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return number(value)
    return _escape_pipes(text(value, limit))


def table(header: Sequence[str], rows: Iterable[Sequence[Cell]], limit: int = MAX_ITEM_CHARS) -> list[str]:
    """A GFM table: every row has exactly the header's columns (short rows are padded, long ones are an
    error: a bug here, never data), and no cell can add or remove one."""
    width = len(header)
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + " --- |" * width]
    for row in rows:
        if len(row) > width:
            raise ValueError(f"table row has {len(row)} cells for {width} columns")
        cells = [cell(v, limit) for v in row] + [""] * (width - len(row))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _escape_pipes(fragment: str) -> str:
    # GFM splits a row on every pipe that is not escaped, and `\\` is an escaped backslash: a pipe must sit
    # behind an odd run of backslashes to stay inside its cell (inside code spans too: the split comes first).
    return _PIPE.sub(lambda m: m.group(1) + ("|" if len(m.group(1)) % 2 else "\\|"), fragment)


# -- numbers and times ----------------------------------------------------------------------------------


def number(value: float | int | None, digits: int = 3) -> Md:
    """A number for people: ints with thousands separators, floats with `digits` decimals at most (no
    trailing zeros), None or NaN as "—". Like the other formatters here it returns `Md`: digits, units and
    "%" need no escaping."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Md("—")
    if isinstance(value, bool):
        return Md("yes" if value else "no")
    if isinstance(value, int):
        return Md(f"{value:,}")
    shown = f"{value:,.{digits}f}"
    if "." in shown:  # trailing zeros of the decimals only: "100" must stay 100
        shown = shown.rstrip("0").rstrip(".")
    return Md("0" if shown == "-0" else shown)


def seconds(value: float | None) -> Md:
    """A duration: `850 ms`, `2.5 s`, `3m20s`, `2h05m`, `3d04h`; None as "—"."""
    if value is None or not math.isfinite(value):
        return Md("—")
    if value < 1:
        return Md(f"{number(value * 1000, 1)} ms")
    if value < 60:
        return Md(f"{number(value, 2)} s")
    minutes, sec = divmod(int(value), 60)
    if minutes < 60:
        return Md(f"{minutes}m{sec:02d}s")
    hours, minutes = divmod(minutes, 60)
    return Md(f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h")


def size(value: int | None) -> Md:
    """A byte count: `512 B`, `1.5 KiB` ... `TiB`; None as "—"."""
    if value is None:
        return Md("—")
    scaled = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(scaled) < 1024:
            return Md(f"{value:,} B" if unit == "B" else f"{scaled:.1f} {unit}")
        scaled /= 1024
    return Md(f"{scaled:.1f} TiB")


def percent(part: float, whole: float) -> Md:
    """`part / whole` as a percentage with one decimal, or "—" when `whole` is 0."""
    return Md("—" if not whole else f"{100 * part / whole:.1f} %")


def utc_iso(moment: datetime | float) -> str:
    """Epoch seconds or a datetime (naive: UTC) as `2026-01-31T14:02:09Z`."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # naive times in this codebase are UTC
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- front matter ---------------------------------------------------------------------------------------

Scalar = str | int | float | bool | None


def yaml_value(value: object) -> str:
    """One YAML value in flow style: null, true/false, a number, a double-quoted string, or a flow list of
    those. Datetimes become ISO strings and paths strings; anything else is a TypeError (a bug)."""
    if value is None or isinstance(value, bool | str):
        return _json(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"  # `.nan`/`.inf` are YAML but not JSON; a report has nothing to say with them
        shown = repr(value)
        # PyYAML (YAML 1.1) reads "1e+100" as a string: a float needs a "." before its exponent.
        return shown if "." in shown or "e" not in shown else shown.replace("e", ".0e", 1)
    if isinstance(value, datetime):
        return _json(utc_iso(value))
    if isinstance(value, os.PathLike):
        return _json(os.fspath(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow_item(item) for item in value) + "]"
    raise TypeError(f"front matter cannot hold a {type(value).__name__}")


def yaml_key(key: str) -> str:
    """A mapping key: plain when it is an identifier YAML reads as a string, else double-quoted."""
    plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
    return key if plain else _json(key)


def front_matter(fields: Mapping[str, object]) -> str:
    """YAML front matter between `---` lines, then a blank line. Values are scalars, lists of scalars, or
    mappings one level deep (of scalars or lists of scalars), written as an indented block."""
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, Mapping):
            if not value:
                lines.append(f"{yaml_key(key)}: {{}}")
                continue
            lines.append(f"{yaml_key(key)}:")
            for sub, item in value.items():
                if isinstance(item, Mapping):
                    raise TypeError(f"front matter {key}.{sub}: mappings nest one level only")
                lines.append(f"  {yaml_key(str(sub))}: {yaml_value(item)}")
        else:
            lines.append(f"{yaml_key(key)}: {yaml_value(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n\n"


def _flow_item(item: object) -> str:
    if isinstance(item, Mapping | list | tuple):
        raise TypeError("front matter lists hold scalars only")
    return yaml_value(item)


def _json(value: Scalar) -> str:
    # JSON's escapes are YAML's; ensure_ascii=False keeps names readable, and what YAML refuses raw is
    # escaped after.
    dumped = json.dumps(value, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


# -- the writer -----------------------------------------------------------------------------------------


def write_report(directory: Path, name: str, text: str) -> Path:
    """Write `text` to `directory/name` atomically (mode 0644) and return the path.

    A temp file beside the target (same filesystem, so `os.replace` is atomic; its name starts with "." so
    Obsidian and folder watchers ignore it) is renamed over the old report: a reader sees the old report or
    the new one, never half of one. No fsync: reports are rewritten every snapshot, and an fsync on a busy
    disk would stall the coordinator's loop for longer than a lost report is worth. `name` must be a plain
    file name (`report_file_name` makes one from anything).
    """
    if not name or name != os.path.basename(name) or name.startswith(".") or "\x00" in name:
        raise ValueError(f"report name {name!r} is not a plain file name")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    temp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)  # the umask would narrow it; reports are for whoever may read the state dir
        # errors="replace": every string went through the escapes above, so this is a last guard that a
        # missed one costs a "?" rather than the whole report.
        with open(fd, "w", encoding="utf-8", newline="\n", errors="replace") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
