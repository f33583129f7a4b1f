"""Gitignore-style globs for `.bucket-include` rules, translated to regexes that never backtrack
polynomially (the globs and the names they meet are both hostile).

Globs (`glob_match`), against a posix path relative to the bucket without a leading "/":
`*` matches within one segment, `?` one character except "/", `[...]` / `[!...]` classes (never "/"),
`**` as a whole segment any number of segments (`a/**/b` matches `a/b`; a trailing `a/**` everything
below `a`), `\\x` a literal x, a trailing "/" a directory and everything below it. A pattern with no
"/" (a trailing one aside) matches at any depth (`*.log` matches `a/b/c.log`); any other is anchored to
the bucket root (a leading "/" only anchors). A pattern matches the whole path, not its ancestors: `src/*`
does not match `src/a/b.js`; write `src/` or `src/**` for that.

Star-free pieces between `*`s, and runs of fixed segments between `**`s, are committed to their first
match (`_atomic`): exact for globs (the pieces are fixed-width, and what follows a `**` can absorb
anything), and linear where a plain translation backtracks polynomially (`*a*a*a*a*a*a*b` against a
100-character name: 33 s plain, ~0.3 ms here).
"""

from __future__ import annotations

import functools
import itertools
import re


def _class_regex(pattern: str, start: int) -> tuple[str, int]:
    """Translate the `[...]` class starting at `pattern[start]`; return its regex and the index after it."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    body: list[str] = []
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            break
        first = False
        if ch == "\\":
            i += 1
            if i == len(pattern):
                raise ValueError("trailing backslash in a character class")
            ch = pattern[i]
        if ch == "/":
            raise ValueError("a character class cannot match '/'")
        # Escape everything but the range dash, so "]", "\\", "^" and "[" inside are literal to `re`.
        body.append(ch if ch == "-" else re.escape(ch))
        i += 1
    else:
        raise ValueError("unbalanced '[' (no closing ']')")
    if not body:
        raise ValueError("empty character class")
    chars = "".join(body)
    # A class never matches "/", as in gitignore: add it to a negated class, and keep a range that spans it
    # ("[.-0]") from matching it with a lookahead.
    return (f"[^/{chars}]" if negate else f"(?!/)[{chars}]"), i + 1


def _piece_regex(piece: str) -> str:
    """Translate a star-free part of a segment (literals, `?`, classes, escapes) into a regex."""
    out: list[str] = []
    i = 0
    while i < len(piece):
        ch = piece[i]
        if ch == "?":
            out.append("[^/]")
        elif ch == "[":
            regex, i = _class_regex(piece, i)
            out.append(regex)
            continue
        elif ch == "\\":
            if i + 1 == len(piece):
                raise ValueError("trailing backslash")
            i += 1
            out.append(re.escape(piece[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _split_stars(segment: str) -> list[str]:
    """The star-free pieces of a segment, split at each run of unescaped, unbracketed `*`."""
    pieces: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            pieces.append("".join(current))
            current = []
            while i + 1 < len(segment) and segment[i + 1] == "*":  # "a**b" is "a*b", as in gitignore
                i += 1
        elif ch == "\\" and i + 1 < len(segment):
            current += [ch, segment[i + 1]]
            i += 1
        elif ch == "[":
            end = _class_end(segment, i)
            current.append(segment[i:end])
            i = end - 1
        else:
            current.append(ch)
        i += 1
    pieces.append("".join(current))
    return pieces


def _class_end(segment: str, start: int) -> int:
    """The index after the `[...]` class at `start` (or after the `[` alone when it never closes, which
    `_class_regex` then reports)."""
    i = start + 1
    if i < len(segment) and segment[i] in "!^":
        i += 1
    first = True
    while i < len(segment):
        if segment[i] == "\\":
            i += 2
            first = False
            continue
        if segment[i] == "]" and not first:
            return i + 1
        first = False
        i += 1
    return start + 1


def _atomic(regex: str) -> str:
    """`regex` matched once, at its first place, and never revisited: `(?=(?P<g>...))(?P=g)`, the trick
    CPython's `fnmatch` uses since 3.9, since `re` has no atomic groups before 3.11's `(?>...)`. Group
    names are unique per call, so any number of globs can be joined in one alternation."""
    name = f"g{next(_GROUP_NAMES)}"
    return f"(?=(?P<{name}>{regex}))(?P={name})"


_GROUP_NAMES = itertools.count()


def _segment_regex(segment: str) -> str:
    """Translate one path segment (no "/", not "**") into a regex.

    Star-free pieces are fixed-width, so committing each middle piece to its first occurrence is exactly
    glob matching, and it keeps a hostile pattern such as `*a*a*a*a*b` linear against a hostile name
    (plain `[^/]*a[^/]*a...` backtracks polynomially: 4 stars took 0.13 s on a 100-character name, 6 took
    33 s)."""
    pieces = _split_stars(segment)
    if len(pieces) == 1:
        return _piece_regex(pieces[0])
    middle = "".join(_atomic(f"[^/]*?{_piece_regex(p)}") for p in pieces[1:-1] if p)
    return _piece_regex(pieces[0]) + middle + "[^/]*" + _piece_regex(pieces[-1])


def glob_regex(pattern: str) -> str:
    """The regex (for `re.fullmatch`) a glob compiles to; `ValueError` says why a glob is invalid."""
    body = pattern
    # A trailing "/" names a directory unless an odd number of backslashes escapes it (an even number is
    # escaped backslashes, then the directory's slash).
    trailing = len(body) - 1 - len(body[:-1].rstrip("\\")) if body.endswith("/") else 0
    dir_only = body.endswith("/") and trailing % 2 == 0
    body = body.rstrip("/") if dir_only else body
    anchored = body.startswith("/")
    body = body.lstrip("/")
    if not body:
        raise ValueError("empty pattern")
    segments: list[str] = []
    for segment in body.split("/"):
        # "a//b" means "a/b", as paths do; "**/**" means "**", and stacking them would only make the regex
        # backtrack polynomially on deep paths.
        if segment and not (segment == "**" and segments and segments[-1] == "**"):
            segments.append(segment)
    anchored = anchored or len(segments) > 1
    # Runs of fixed segments between "**"s. A middle run is committed to its first place after the "**"
    # before it (segments match whole segments, so that is exact), which keeps `a/**/b/**/c/**/d` linear
    # on a deep path; the last run may need any place, and there is only one "**" left to try.
    runs: list[list[str]] = [[]]
    for segment in segments:
        if segment == "**":
            runs.append([])
        else:
            runs[-1].append(segment)
    regex = "/".join(_segment_regex(s) for s in runs[0])
    sep = "/" if regex else ""  # (before the next part; nothing after a leading "**" or a committed run)
    for k, run in enumerate(runs[1:], start=1):
        fixed = "/".join(_segment_regex(s) for s in run)
        if not run:  # a trailing "**": everything below what came before
            regex += sep + ".*"
        elif k < len(runs) - 1:
            # The run's own trailing "/" is inside the commitment: "b" must not settle on the "b" of "bb/".
            regex += sep + _atomic(f"(?:[^/]*/)*?{fixed}/")
            sep = ""
        else:
            regex += sep + f"(?:.*/)?{fixed}"
    if not anchored:
        regex = "(?:.*/)?" + regex
    if dir_only:
        regex += "/.*"
    # Compile here so an impossible class such as "[z-a]" is reported as a bad glob, not at match time.
    try:
        re.compile(regex)
    except (re.error, OverflowError, RecursionError, MemoryError) as exc:
        raise ValueError(f"invalid glob ({exc})") from None
    return regex


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_regex(pattern), re.DOTALL)


def glob_match(pattern: str, relpath: str) -> bool:
    """Whether `relpath` (posix, relative to the bucket, no leading "/") matches the glob `pattern`.

    The glob is compiled once and cached; an invalid glob raises `ValueError`."""
    return _compiled(pattern).fullmatch(relpath) is not None


def check_glob(pattern: str) -> None:
    """Raise `ValueError` saying why `pattern` is not a valid glob (compiling it into the cache)."""
    _compiled(pattern)
