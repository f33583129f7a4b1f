"""Configuration: defaults, the shipped file, overrides and one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from coordinator.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_default_file_equals_the_built_in_defaults() -> None:
    with open(REPO / "config" / "openbuckets.toml", "rb") as fh:
        from_file = Config.model_validate(tomllib.load(fh))
    assert from_file == Config()


def test_overrides_apply(tmp_path: Path) -> None:
    cfg = load_config(None, {"service.workers": 7, "buckets": [{"path": str(tmp_path / "b")}]})
    assert cfg.service.workers == 7
    assert cfg.buckets[0].name == "b"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[service]\nworkers = -1\n", "service.workers: Input should be greater than or equal to 1"),
        ("[sandbox]\nrequire = ['landlok']\n", "sandbox.require: unknown sandbox layer 'landlok' (known:"),
        ("[sandbox]\ndisable = ['rlimits']\n", "sandbox: disable: 'rlimits' is a base layer and cannot be"),
        (
            "[sandbox]\nrequire = ['seccomp']\ndisable = ['seccomp']\n",
            "sandbox: require: 'seccomp' is both required and disabled",
        ),
        ("[jobs]\nmax_processes = 2\n", "jobs.max_processes: Input should be greater than or equal to 8"),
        ("[service]\nworkrs = 2\n", "service.workrs: unknown key"),
        ("[service]\nworkers = 'many'\n", "service.workers: Input should be a valid integer"),
        (
            "[[buckets]]\npath = '/nonexistent-ob/x'\n",
            "buckets[0].path: parent directory /nonexistent-ob does not exist",
        ),
        ("[[buckets]]\nname = 'x'\n", "buckets[0].path: Field required"),
        ("[service\n", "invalid TOML"),
        (
            "[[skills]]\npattern = '*.pdf'\nskill = 'pdf'\n",
            "skills[0].skill: unknown skill 'pdf'; the built-in skills are text, markdown, json",
        ),
        ("[[skills]]\nskill = 'text'\n", "skills[0].pattern: Field required"),
        (
            "[[skills]]\npattern = '*.pdf'\ncommand = ['pdftotext', '{input}', '{output}']\n",
            "skills[0].command: command argument '{output}': the only placeholder is {input}",
        ),
        (
            "[[skills]]\npattern = '*.pdf'\ncommand = ['x', '{input}']\nrate_limit = '60 a minute'\n",
            "skills[0].rate_limit: rate_limit '60 a minute' is not N/s, N/min, N/hour or N/day",
        ),
        (
            "[[grep]]\nname = 'x'\nregex = '(unclosed'\n",
            "grep[0].regex: invalid regular expression '(unclosed': missing ), unterminated subpattern",
        ),
        (
            "[[grep]]\nname = 'x'\nregex = 'a'\n[[grep]]\nname = 'x'\nregex = 'b'\n",
            "grep[1].name: grep rule name 'x' is used twice",
        ),
        (
            "[[grep]]\nname = 'x'\nregex = 'a'\nbuckets = ['nope']\n",
            "grep[0].buckets: no bucket named 'nope'",
        ),
        ("[[skills]]\npattern = '*'\n", "skills[0]: give exactly one of skill, handler or command"),
        (
            "[[skills]]\npattern = '*'\nhandler = 'no colon'\n",
            "skills[0].handler: handler 'no colon' is not of the form package.module:function",
        ),
    ],
)
def test_bad_config_is_one_line_naming_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_two_buckets_sharing_output_get_a_subdir_each(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        {
            "service.output": str(tmp_path / "n"),
            "buckets": [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "b")}],
        },
    )
    assert cfg.bucket_output(cfg.buckets[0]) == tmp_path / "n" / "a"
    assert cfg.bucket_output(cfg.buckets[1]) == tmp_path / "n" / "b"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_skill_rules_keep_their_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[[skills]]\npattern = '*.log'\nskill = 'text'\n[[skills]]\npattern = 'data/*'\nskill = 'csv'\n",
    )
    cfg = load_config(path)
    assert [(r.pattern, r.skill) for r in cfg.skills] == [("*.log", "text"), ("data/*", "csv")]


def test_environment_variables_sit_between_the_file_and_the_command_line(tmp_path: Path) -> None:
    from coordinator.config import env_overrides, ignored_env

    path = tmp_path / "ob.toml"
    path.write_text(f'[service]\nworkers = 2\nstate_dir = "{tmp_path}/s"\n[[buckets]]\npath = "{tmp_path}"\n')
    env = {"OPENBUCKETS_SERVICE__WORKERS": "6", "OPENBUCKETS_WATCHER__TEMP_IGNORE": '["*.x"]', "HOME": "/"}
    assert load_config(path, environ=env).service.workers == 6
    assert load_config(path, environ=env).watcher.temp_ignore == ["*.x"]
    assert load_config(path, {"service.workers": 9}, environ=env).service.workers == 9  # the CLI wins
    assert env_overrides({"OPENBUCKETS_SERVICE__LOG_LEVEL": "DEBUG"}) == {
        "service.log_level": ("OPENBUCKETS_SERVICE__LOG_LEVEL", "DEBUG")  # not TOML: taken as a string
    }
    # Another tool's variable, a typo, a list item, a nested key: ignored (and named by `ignored_env`).
    odd = {
        "OPENBUCKETS_LOG__LEVEL": "debug",
        "OPENBUCKETS_SERVICE__WRKERS": "3",
        "OPENBUCKETS_BUCKETS__PATH": "/tmp",
        "OPENBUCKETS_SERVICE__WORKERS__X": "1",
    }
    assert load_config(path, environ=odd).service.workers == 2
    assert sorted(ignored_env(odd)) == sorted(odd)
    # Text and path settings take the text: a date-like or number-like output dir stays a path.
    dated = load_config(path, environ={"OPENBUCKETS_SERVICE__OUTPUT": "2024-01-01"})
    assert dated.service.output == Path("2024-01-01")
    with pytest.raises(ConfigError, match=r"with OPENBUCKETS_SERVICE__WORKERS\): service.workers"):
        load_config(path, environ={"OPENBUCKETS_SERVICE__WORKERS": "many"})


def test_config_dump_sources_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator.provenance import config_sources, source_of

    path = tmp_path / "ob.toml"
    path.write_text('[service]\nworkers = 2\nlog_level = "INFO"\n')
    monkeypatch.setenv("OPENBUCKETS_SERVICE__WORKERS", "6")
    sources = config_sources(path, {"service.log_level": "DEBUG"})
    assert source_of("service.workers", sources) == "env:OPENBUCKETS_SERVICE__WORKERS"
    assert source_of("service.log_level", sources) == "cli"
    assert source_of("service.output", sources) == "default"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a/b", "cannot contain '/'"),
        ("..", "cannot be '.' or '..'"),
        ("x\x01y", "control characters"),
        ("n" * 201, "at most 200"),
    ],
)
def test_a_bucket_name_is_one_printable_path_component(tmp_path: Path, name: str, why: str) -> None:
    # It names a directory (<output>/<name>/, sidecar_dir/<name>/) and a note (CONTEXT_TREE-<name>).
    config = tmp_path / "ob.toml"
    toml_name = name.replace("\x01", "\\u0001")  # (TOML spells a control character as an escape)
    config.write_text(f'[[buckets]]\nname = "{toml_name}"\npath = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match=why) as raised:
        load_config(config)
    assert "\n" not in str(raised.value) and "buckets[0]" in str(raised.value)
