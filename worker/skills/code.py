"""The source-code skill: the language, the definitions a reader would look for, comment and blank lines.

This runs on every source file, so it is a handful of regex passes over the text and nothing else: no
parsing, no per-line Python loop. Every pattern starts with a literal newline (the text is scanned with one
prepended, so line starts are found by the regex engine's fast literal search) and uses only possessive
or bounded quantifiers over disjoint character classes, so hostile input cannot make it backtrack: the
work is linear in the text, whatever the text.

Definitions are found "roughly": a line that starts like one (`def x`, `fn x`, `class X`, a C-family
signature followed by `{`). Nested and indented ones count too (methods); definitions spread over several
lines, or hidden behind macros, may be missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.pipeline.filetypes import extension
from worker.skills import md
from worker.skills.base import FieldValue, Section, SkillInput, SkillOutput
from worker.skills.data import unread_fields

_NAME = r"[^\W\d]\w*+"  # an identifier, Unicode letters included
_JS_NAME = r"(?!\d)[\w$]++"
_S, _B = r"[ \t]++", r"[ \t]*+"  # some blanks, maybe blanks
_WORDS = rf"(?:[@\w]++{_S})*?"  # modifiers and annotations before a keyword (public, static, @objc…)
_PARAMS = r"\((?:[^;{}\n()]++|\([^;{}\n()]*+\))*+\)"  # one level of nested parentheses
#: C-family definitions: a head ending in a name, parameters, trailing words (const, throws …) and a `{`
#: on the same or the next line. The head is split into words in Python (see `_signature_name`).
_SIGNATURE = rf"(?P<N>[A-Za-z_@<~][^\n;(){{}}=]{{0,200}}+){_PARAMS}[^;{{}}\n]{{0,200}}+(?:\{{|\n{_B}\{{)"
_EXPORT = rf"(?:export{_S})?(?:default{_S})?"
_RUST_VIS = rf"(?:pub(?:\([^()\n]{{0,100}}+\))?{_S})?"
_RUST_FN = rf'(?:(?:const|async|unsafe|extern(?:{_S}"[^"\n]{{0,20}}+")?){_S})*+fn'
_GENERICS = r"<(?:[^<>\n]++|<[^<>\n]*+>)*+>"  # one level of nested angle brackets
_TYPE_ANNOTATION = r"(?::[^=\n]{0,200}+)?"
_JS = [
    ("class", rf"{_EXPORT}(?:abstract{_S})?class{_S}(?P<N>{_JS_NAME})"),
    ("function", rf"{_EXPORT}(?:async{_S})?function\b{_B}\*?{_B}(?P<N>{_JS_NAME})"),
    (  # const name = (…) => / const name = async x => / const name = function
        "function",
        rf"(?:export{_S})?(?:const|let|var){_S}(?P<N>{_JS_NAME}){_B}{_TYPE_ANNOTATION}={_B}(?:async\b{_B})?"
        rf"(?:function\b|(?:\([^()\n]{{0,300}}+\)|{_JS_NAME}){_B}{_TYPE_ANNOTATION}=>)",
    ),
]

#: language → (kind, pattern) alternatives; the pattern names the definition in a group written `(?P<N>`.
#: Kinds: "class" (any type definition), "function", "impl" (neither), "signature" (checked in Python).
_DEFINITIONS: dict[str, list[tuple[str, str]]] = {
    "python": [
        ("class", rf"class{_S}(?P<N>{_NAME})"),
        ("function", rf"(?:async{_S})?def{_S}(?P<N>{_NAME})"),
    ],
    "javascript": _JS,
    "typescript": [
        *_JS,
        ("class", rf"(?:export{_S})?(?:declare{_S})?(?:interface|enum){_S}(?P<N>{_JS_NAME})"),
    ],
    "go": [  # top-level only: gofmt puts them at column 0
        ("function", rf"(?<=\n)func{_B}(?:\([^()\n]{{0,200}}+\){_B})?(?P<N>{_NAME})"),
        ("class", rf"(?<=\n)type{_S}(?P<N>{_NAME})(?:\[[^\]\n]{{0,200}}+\])?{_S}(?:struct|interface)\b"),
    ],
    "rust": [
        ("function", rf"{_RUST_VIS}{_RUST_FN}{_S}(?P<N>{_NAME})"),
        ("class", rf"{_RUST_VIS}(?:struct|enum|union|(?:unsafe{_S})?trait){_S}(?P<N>{_NAME})"),
        ("impl", rf"(?:unsafe{_S})?impl\b{_B}(?:{_GENERICS})?{_B}(?P<N>[^{{\n]{{1,200}}+)"),
    ],
    "java": [
        ("class", rf"{_WORDS}(?:class|interface|enum|record|@interface){_S}(?P<N>{_NAME})"),
        ("signature", _SIGNATURE),
    ],
    "csharp": [
        ("class", rf"{_WORDS}(?:class|interface|struct|enum|record){_S}(?P<N>{_NAME})"),
        ("signature", _SIGNATURE),
    ],
    "kotlin": [
        ("class", rf"{_WORDS}(?:class|interface|object){_S}(?P<N>{_NAME})"),
        ("function", rf"{_WORDS}fun{_S}(?:<[^>\n]{{0,100}}+>{_B})?(?:{_NAME}\.)*+(?P<N>{_NAME})"),
    ],
    "swift": [
        ("class", rf"{_WORDS}(?:class|struct|enum|protocol|actor){_S}(?P<N>{_NAME})"),
        ("function", rf"{_WORDS}func{_S}(?P<N>{_NAME})"),
    ],
    "scala": [
        ("class", rf"{_WORDS}(?:class|object|trait|enum){_S}(?P<N>{_NAME})"),
        ("function", rf"{_WORDS}def{_S}(?P<N>{_NAME})"),
    ],
    "c": [
        ("class", rf"(?:typedef{_S})?(?:struct|union|enum){_S}(?P<N>{_NAME}){_B}(?=\{{|\r?\n)"),
        ("signature", _SIGNATURE),
    ],
    "cpp": [
        (
            "class",
            rf"(?:template{_B}<[^>\n]{{0,200}}+>{_B})?(?:class|struct|union|enum(?:{_S}class)?){_S}"
            rf"(?:{_NAME}{_S})?(?P<N>{_NAME})(?:{_S}final)?{_B}(?=[{{:]|\r?\n)",
        ),
        ("signature", _SIGNATURE),
    ],
    "ruby": [
        ("class", rf"(?:class|module){_S}(?P<N>[A-Z][\w:]*+)"),
        ("function", rf"def{_S}(?:self\.)?(?P<N>{_NAME}[?!=]?)"),
    ],
    "php": [
        ("class", rf"(?:(?:abstract|final|readonly){_S})*+(?:class|interface|trait|enum){_S}(?P<N>{_NAME})"),
        ("function", rf"{_WORDS}function{_S}&?(?P<N>{_NAME})"),
    ],
    "shell": [
        ("function", rf"function{_S}(?P<N>[\w.:-]++)"),
        ("function", rf"(?P<N>[\w.:-]++){_B}\(\)"),
    ],
    "perl": [("class", rf"package{_S}(?P<N>[\w:]++)"), ("function", rf"sub{_S}(?P<N>[\w:]++)")],
    "lua": [
        ("function", rf"(?:local{_S})?function{_S}(?P<N>[\w.:]++)"),
        ("function", rf"(?:local{_S})?(?P<N>[\w.:]++){_B}={_B}function\b"),
    ],
    "r": [("function", rf"(?P<N>[\w.]++){_B}(?:<<?-|=){_B}function\b")],
}

_HASH, _SLASHES = "#", r"//|/\*|\*(?![^ \t\r\n/])"  # "*" continues a block comment; "*p" does not
_COMMENTS = {
    **dict.fromkeys(["python", "ruby", "shell", "perl", "r"], _HASH),
    **dict.fromkeys(["javascript", "typescript", "go", "rust", "java", "csharp"], _SLASHES),
    **dict.fromkeys(["kotlin", "swift", "scala", "c", "cpp"], _SLASHES),
    "php": f"{_HASH}|{_SLASHES}",
    "lua": "--",
}

#: Languages `filetypes` does not name, by extension.
_EXTRA_EXTENSIONS = {"scala": "scala", "sc": "scala", "kts": "kotlin"}
#: First words of a C-family "signature" that make it a statement, not a definition.
_STATEMENTS = frozenset(
    ["else", "return", "new", "throw", "case", "goto", "delete", "await", "yield", "typedef", "using", "do"]
)
_SIGNATURE_NAME = re.compile(r"[~A-Za-z_][\w:~]*+")


@dataclass(frozen=True, slots=True)
class _Language:
    definitions: re.Pattern[str]
    kinds: dict[str, str]  # the definitions' group names → their kinds
    #: A blank line (matching "") or one that starts with a comment (matching its marker): one pass for both.
    blank_or_comment: re.Pattern[str]
    has_classes: bool


def _compile(language: str) -> _Language:
    # Each alternative's name group becomes `<kind><index>`: the match's `lastgroup` tells which matched.
    kinds: dict[str, str] = {}
    alternatives = []
    for index, (kind, pattern) in enumerate(_DEFINITIONS[language]):
        kinds[f"{kind}{index}"] = kind
        alternatives.append(pattern.replace("(?P<N>", f"(?P<{kind}{index}>"))
    return _Language(
        definitions=re.compile(rf"\n{_B}(?:" + "|".join(alternatives) + ")"),
        kinds=kinds,
        blank_or_comment=re.compile(rf"\n[ \t\r\f\v]*+(?:(?=\n)|({_COMMENTS[language]}))"),
        has_classes=any(kind == "class" for kind, _ in _DEFINITIONS[language]),
    )


_LANGUAGES = {language: _compile(language) for language in _DEFINITIONS}


def code_skill(inp: SkillInput) -> SkillOutput:
    """The file's language, its definitions (in file order), and its comment and blank lines."""
    language = inp.facts.file_type
    if language not in _LANGUAGES:
        language = _EXTRA_EXTENSIONS.get(extension(inp.name), "")
    found = _LANGUAGES.get(language)
    if found is None:
        return SkillOutput(fields={"language": None})
    tags = [f"code/{language}"]
    text = inp.text
    if text is None:
        return SkillOutput(fields={"language": language, **unread_fields(inp)}, tags=tags)

    # Every line, the first included, is preceded by "\n" and followed by one.
    body = "\n" + text if not text or text.endswith("\n") else "\n" + text + "\n"
    names: list[str] = []
    classes = functions = 0
    for match in found.definitions.finditer(body):
        group = match.lastgroup or ""
        kind, name = found.kinds[group], match[group]
        if kind == "class":
            classes += 1
        elif kind == "function":
            functions += 1
        elif kind == "signature":
            name = _signature_name(name)
            if not name:
                continue
            functions += 1
        elif kind == "impl":
            name = name.partition(" where")[0].strip()  # `impl<T> Show for List<T> where T: Show {`
            if not name:
                continue
        names.append(name)

    fields: dict[str, FieldValue] = {"language": language, "definitions": len(names)}
    if found.has_classes:
        fields["classes"] = classes
    fields["functions"] = functions
    markers = found.blank_or_comment.findall(body)
    blank = markers.count("")
    fields["comment_lines"] = len(markers) - blank
    fields["blank_lines"] = blank
    sections = []
    if names:
        most = inp.limits.max_list_items
        listed = md.bullets((_code(name) for name in names[:most]), len(names), most)
        sections.append(Section("Definitions", listed))
    return SkillOutput(fields=fields, sections=sections, tags=tags)


def _signature_name(head: str) -> str:
    """The defined name in a C-family head (`static int *foo`, `public void run`), or "" for a statement
    (`else if`, `return f`) or a head with no type before the name (a call, a macro)."""
    words = head.replace("*", " ").replace("&", " ").split()
    if len(words) < 2 or words[0] in _STATEMENTS or not _SIGNATURE_NAME.fullmatch(words[-1]):
        return ""
    return words[-1]


def _code(name: str) -> str:
    # Most names are short identifiers, which md.code would return unchanged between single backticks; the
    # shortcut saves a quarter of this skill's time on a typical file. Anything else gets md.code.
    if len(name) <= md.MAX_ITEM_CHARS and name.isidentifier():
        return f"`{name}`"
    return md.code(name)
