"""The `.bucket-include` rules of the original Node.js prototype, shared by the coordinator (which reports
them in `CONFIG_DUMP.md` and `ob-ctl config --for FILE`) and the workers (which collect related context
and grep the `[dirs:...]` directories with them).

File format (gitignore-style, one rule a line, trailing whitespace ignored):

    # a comment                 blank lines and `#` lines are skipped
    src/**/*.js                 a bare line is an include glob
    !**/*.min.js                `!glob` is an exclude glob
    \\#notes.txt                 `\\#` and `\\!` start a literal `#` / `!` name
    [dirs:./configs]            a directory-grep section: the lines below it, up to the next header,
    TODO|FIXME|HACK             are Python `re` patterns searched for in PATH (relative to the bucket)

A line that is wholly `[name]` or `[name:...]` is a section header; only `[dirs:PATH]` is known. Globs
come before the first section: there is no header that returns to globs. A bad line (bad glob, bad
regex, unknown section, a dirs path that is empty, absolute or leaves the bucket) never raises: it
becomes a `Problem` naming the file and line and is skipped, so the rest of the file keeps working.
The lines under a refused or unknown header are skipped with it (reported once, at the header), since
guessing what they were meant to be could grep or include something the user never asked for.

Globs (`glob_match`), against a posix path relative to the bucket without a leading "/":
`*` matches within one segment, `?` one character except "/", `[...]` / `[!...]` classes (never "/"),
`**` as a whole segment any number of segments (`a/**/b` matches `a/b`; a trailing `a/**` everything
below `a`), `\\x` a literal x, a trailing "/" a directory and everything below it. A pattern with no
"/" (a trailing one aside) matches at any depth (`*.log` matches `a/b/c.log`); any other is anchored to
the bucket root (a leading "/" only anchors). A pattern matches the whole path, not its ancestors: `src/*`
does not match `src/a/b.js`; write `src/` or `src/**` for that.

Lookup, most specific first (`rule_files`): the bucket's `.{ext}.bucket-include`, the global profile's
`.{ext}.bucket-include` (`$XDG_CONFIG_HOME/open-buckets/`, else `~/.config/open-buckets/`), the bucket's
`.bucket-include`, the global `.bucket-include`. In the issue's words the global profile is the base,
the bucket's own file goes on top of it, and the per-extension files go on top of both. `merge`
concatenates includes and excludes in that order (the `DEFAULT_EXCLUDES` last, source "default"), and
merges `[dirs:...]` sections by normalised path, the most specific file's section winning whole.

Cost: each glob compiles to a regex once (cached); `Rules` joins its includes into one alternation and
its excludes into another, so `Rules.related` is two `re.fullmatch` calls: 0.3-1 µs per call on typical
1-6 segment paths (timeit, CPython 3.11, 3 includes and 2 excludes plus the 5 defaults). Globs and names
are both hostile, so the translation never backtracks polynomially: the star-free pieces between `*`s,
and the runs of segments between `**`s, are committed to their first match (`_atomic`).
"""

from __future__ import annotations

import functools
import itertools
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: What is never related context, appended after every file's excludes (source "default"). The issue's
#: `node_modules/**`, `.git/**`, `dist/**`, `build/**` and `*.log`, at any depth: read as gitignore reads
#: a pattern with a "/", `node_modules/**` would only mean the bucket root's, and a nested package's
#: `node_modules` (or a sub-project's `build/`) would flood the related files it exists to keep out.
DEFAULT_EXCLUDES: tuple[str, ...] = ("**/node_modules/**", "**/.git/**", "**/dist/**", "**/build/**", "*.log")

#: Longer lines are refused (as the wire refuses longer rules): a glob or regex is a line, not a file.
MAX_LINE_CHARS = 1024

#: The file name of a bucket's (or the global profile's) rules; per-extension files are `.{ext}` + this.
INCLUDE_NAME = ".bucket-include"

#: Where the global profile lives, under $XDG_CONFIG_HOME (or ~/.config).
PROFILE_DIR = "open-buckets"

# A header is a line that is nothing but [name] or [name:argument]; anything else starting with "[" is a
# glob with a character class, such as "[abc]*.txt".
_HEADER = re.compile(r"\[([A-Za-z][A-Za-z0-9_-]*)(?::(.*))?\]")


@dataclass(frozen=True)
class Rule:
    """One include or exclude glob, or one grep regex, and where it came from (line 0: no file)."""

    pattern: str
    source: str
    line: int

    @property
    def where(self) -> str:
        """`source:line`, or just the source for rules that come from no file (the defaults)."""
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True)
class Problem:
    """A line that was skipped (line 0: the whole file), with why; the coordinator makes it an ERROR."""

    source: str
    line: int
    text: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}: {self.text!r}"


@dataclass
class DirsSection:
    """A `[dirs:PATH]` section: regex patterns to grep for in PATH (normalised, relative to the bucket)."""

    path: str
    patterns: list[Rule]
    source: str
    line: int


@dataclass
class IncludeFile:
    """One parsed `.bucket-include` file."""

    source: str
    includes: list[Rule] = field(default_factory=list)
    excludes: list[Rule] = field(default_factory=list)
    dirs: list[DirsSection] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- globs


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


# ---------------------------------------------------------------------------------------------- parse


def _dirs_path(raw: str) -> str:
    """Normalise a `[dirs:PATH]` path, refusing what could leave the bucket; `ValueError` says why."""
    path = raw.strip()
    if not path:
        raise ValueError("empty [dirs:] path")
    if "\x00" in path:
        raise ValueError("[dirs:] path contains a NUL byte")
    if path.startswith("/"):
        raise ValueError("[dirs:] path must be relative to the bucket, not absolute")
    path = posixpath.normpath(path)
    if path == ".." or path.startswith("../"):
        raise ValueError("[dirs:] path leaves the bucket")
    return path


def parse(text: str, source: str) -> IncludeFile:
    """Parse a `.bucket-include` file's text; `source` (its path) names it in rules and problems.

    Never raises: each bad line is recorded in `problems` and skipped."""
    result = IncludeFile(source=source)
    section: DirsSection | None = None
    # True under a refused or unknown header: its lines are skipped until the next header.
    skipping = False
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue

        def problem(message: str, line: str = line, number: int = number) -> None:
            result.problems.append(Problem(source, number, line[:MAX_LINE_CHARS], message))

        if len(line) > MAX_LINE_CHARS:
            problem(f"longer than {MAX_LINE_CHARS:,} characters")
            continue

        header = _HEADER.fullmatch(line)
        if header is not None:
            name, argument = header.group(1), header.group(2)
            section, skipping = None, True
            if name != "dirs":
                problem(f"unknown section [{name}] (only [dirs:PATH] is known); its lines are skipped")
            elif argument is None:
                problem("[dirs] needs a path: [dirs:PATH]; its lines are skipped")
            else:
                try:
                    path = _dirs_path(argument)
                except ValueError as exc:
                    problem(f"{exc}; its lines are skipped")
                else:
                    section, skipping = DirsSection(path, [], source, number), False
                    result.dirs.append(section)
            continue
        if skipping:
            continue

        if section is not None:
            try:
                re.compile(line)
            # Not only re.error: "a{99999999999}" overflows and deep nesting recurses, and a rule file is
            # input, so nothing it holds may raise out of here.
            except (re.error, OverflowError, RecursionError, MemoryError) as exc:
                problem(f"invalid regex ({exc})")
            else:
                section.patterns.append(Rule(line, source, number))
            continue

        exclude = line.startswith("!")
        pattern = line[1:] if exclude else line
        try:
            _compiled(pattern)
        except ValueError as exc:
            problem(f"bad glob: {exc}")
            continue
        (result.excludes if exclude else result.includes).append(Rule(pattern, source, number))
    return result


# ---------------------------------------------------------------------------------------------- merge


def _union(rules: Iterable[Rule]) -> re.Pattern[str] | None:
    regexes = [glob_regex(rule.pattern) for rule in rules]
    return re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL) if regexes else None


@dataclass(frozen=True)
class Rules:
    """The rules that apply to one file, merged from its `.bucket-include` files, most specific first."""

    includes: tuple[Rule, ...]
    excludes: tuple[Rule, ...]
    dirs: tuple[DirsSection, ...]
    problems: tuple[Problem, ...]
    _include_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _exclude_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One alternation per side: matching a file is two regex calls however many rules there are.
        object.__setattr__(self, "_include_re", _union(self.includes))
        object.__setattr__(self, "_exclude_re", _union(self.excludes))

    def related(self, relpath: str) -> bool:
        """Whether `relpath` is related context: matched by an include and by no exclude.

        With no includes at all nothing is related (the prototype's behaviour: context is opt-in)."""
        if self._include_re is None or self._include_re.fullmatch(relpath) is None:
            return False
        return self._exclude_re is None or self._exclude_re.fullmatch(relpath) is None

    def explain(self, relpath: str) -> list[str]:
        """Lines saying which rules include and exclude `relpath` and where each came from, then the
        verdict; for `ob-ctl config --for FILE` and `CONFIG_DUMP.md`."""
        lines = [
            f"included by {r.pattern} ({r.where})" for r in self.includes if glob_match(r.pattern, relpath)
        ]
        if not self.includes:
            lines.append("no include rules: nothing is related")
        elif not lines:
            lines.append("no include rule matches")
        lines += [
            f"excluded by !{r.pattern} ({r.where})" for r in self.excludes if glob_match(r.pattern, relpath)
        ]
        lines.append(f"{relpath}: {'related' if self.related(relpath) else 'not related'}")
        return lines


def merge(files: list[IncludeFile]) -> Rules:
    """Merge parsed files given most specific first: includes and excludes concatenated in that order
    with `DEFAULT_EXCLUDES` last; `[dirs:...]` sections by path, the most specific file's winning whole
    (within one file, sections repeating a path are joined); problems concatenated."""
    includes: list[Rule] = []
    excludes: list[Rule] = []
    dirs: dict[str, DirsSection] = {}
    problems: list[Problem] = []
    for file in files:
        includes.extend(file.includes)
        excludes.extend(file.excludes)
        problems.extend(file.problems)
        mine: dict[str, DirsSection] = {}
        for section in file.dirs:
            if section.path in dirs:
                continue  # a more specific file already has this path
            if section.path in mine:
                mine[section.path].patterns.extend(section.patterns)
            else:
                mine[section.path] = DirsSection(
                    section.path, list(section.patterns), section.source, section.line
                )
        dirs.update(mine)
    excludes.extend(Rule(pattern, "default", 0) for pattern in DEFAULT_EXCLUDES)
    return Rules(tuple(includes), tuple(excludes), tuple(dirs.values()), tuple(problems))


# ---------------------------------------------------------------------------------------------- lookup


def profile_dir(xdg_config_home: str | None, home: str) -> str:
    """The global profile's directory: `$XDG_CONFIG_HOME/open-buckets`, else `~/.config/open-buckets`.

    A relative XDG_CONFIG_HOME is ignored, as the XDG spec says."""
    base = xdg_config_home if xdg_config_home and xdg_config_home.startswith("/") else None
    return posixpath.join(base or posixpath.join(home, ".config"), PROFILE_DIR)


def rule_files(bucket_root: str, relpath: str, xdg_config_home: str | None, home: str) -> list[str]:
    """The `.bucket-include` files that apply to `relpath`, most specific first (whether they exist or
    not): the bucket's `.{ext}.bucket-include`, the global one's, the bucket's `.bucket-include`, the
    global one. Files without an extension (`Makefile`, `.bashrc`) get only the last two."""
    return rule_files_in(bucket_root, extension(relpath), profile_dir(xdg_config_home, home))


def extension(relpath: str) -> str:
    """The lower-cased last suffix of the file's name, "" for none; like PurePosixPath.suffix, a leading
    dot starts a hidden name, not an extension."""
    stem = posixpath.basename(relpath).lstrip(".")
    return stem.rsplit(".", 1)[1].lower() if "." in stem else ""


def rule_files_in(bucket_root: str, ext: str, profile: str) -> list[str]:
    """`rule_files` for a file with extension `ext` ("" for none) and the global profile at `profile`."""
    files: list[str] = []
    if ext:
        files += [
            posixpath.join(bucket_root, f".{ext}{INCLUDE_NAME}"),
            posixpath.join(profile, f".{ext}{INCLUDE_NAME}"),
        ]
    files += [posixpath.join(bucket_root, INCLUDE_NAME), posixpath.join(profile, INCLUDE_NAME)]
    return files


def load(
    bucket_root: str,
    relpath: str,
    *,
    xdg_config_home: str | None,
    home: str,
    read: Callable[[str], str | None],
) -> Rules:
    """The merged rules for `relpath`, reading each file of `rule_files` through `read` (None: missing).

    The caller decides how files are opened (the worker refuses symlinks). A file `read` fails on with
    OSError or undecodable bytes becomes a line-0 problem, so one unreadable file spoils nothing else."""
    parsed: list[IncludeFile] = []
    for path in rule_files(bucket_root, relpath, xdg_config_home, home):
        try:
            text = read(path)
        except (OSError, UnicodeDecodeError) as exc:
            parsed.append(IncludeFile(source=path, problems=[Problem(path, 0, "", f"cannot read: {exc}")]))
            continue
        if text is not None:
            parsed.append(parse(text, path))
    return merge(parsed)
