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

Globs: see `protocol.globs` (`glob_match`, `glob_regex`).

Lookup, most specific first (`rule_files`): the bucket's `.{ext}.bucket-include`, the global profile's
`.{ext}.bucket-include` (`$XDG_CONFIG_HOME/open-buckets/`, else `~/.config/open-buckets/`), the bucket's
`.bucket-include`, the global `.bucket-include`. In the issue's words the global profile is the base,
the bucket's own file goes on top of it, and the per-extension files go on top of both. `merge`
concatenates includes and excludes in that order (the `DEFAULT_EXCLUDES` last, source "default"), and
merges `[dirs:...]` sections by normalised path, the most specific file's section winning whole.

Cost: each glob compiles to a regex once (cached); `Rules` joins its includes into one alternation and
its excludes into another, so `Rules.related` is two `re.fullmatch` calls: 0.3-1 µs per call on typical
1-6 segment paths (timeit, CPython 3.11, 3 includes and 2 excludes plus the 5 defaults). Globs and names
are both hostile, so the translation never backtracks polynomially (`protocol.globs`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from protocol.globs import check_glob, glob_match, glob_regex

__all__ = [
    "DEFAULT_EXCLUDES", "INCLUDE_NAME", "DirsSection", "IncludeFile", "Problem", "Rule", "Rules",
    "extension", "glob_match", "glob_regex", "load", "merge", "parse", "profile_dir", "rule_files",
    "rule_files_in",
]  # fmt: skip

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
            check_glob(pattern)
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
