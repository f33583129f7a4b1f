"""The worker's job function takes the note settings from CONFIG and the `.bucket-include` rules from
EXECUTE, and keeps one context cache for the worker's life: a burst scans once."""

from __future__ import annotations

from pathlib import Path

from protocol.messages import Config, ContextRules, Execute, Limits, NoteSettings
from worker.jobs import run_job


def test_run_job_passes_notes_and_context_and_shares_the_cache(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    for i in range(5):
        (bucket / f"f{i}.md").write_text(f"file {i}\n" * 3)
    config = Config(
        heartbeat_interval_s=1,
        liveness=3,
        limits=Limits(max_input_bytes=1 << 20, preview_lines=0),
        notes=NoteSettings(content_max_bytes=10, related_listed=1),
    )
    work = run_job("0.1", lambda: config)
    rules = ContextRules(key="k", includes=["*.md"])
    scanned = []
    for i in range(5):
        job = Execute(
            job_id=str(i), path=str(bucket / f"f{i}.md"), bucket="b", relpath=f"f{i}.md",
            output_path=str(tmp_path / "notes" / f"f{i}.md.obs.md"), deadline_s=30, attempt=1, context=rules,
        )  # fmt: skip
        result = work(job)
        assert result.facts is not None and result.facts.context is not None
        assert result.facts.context.related_files == 4
        scanned.append(result.facts.context.scanned)
    assert scanned == [True, False, False, False, False]
    note = (tmp_path / "notes" / "f4.md.obs.md").read_text()
    assert "*Truncated: the first 10 of 21 bytes are shown.*" in note  # notes.content_max_bytes
    assert "- `f0.md` (21 bytes)\n- … and 3 more" in note  # notes.related_listed

    plain = Execute(
        job_id="p", path=str(bucket / "f0.md"), bucket="b", relpath="f0.md",
        output_path=str(tmp_path / "notes" / "p.obs.md"), deadline_s=30, attempt=1,
    )  # fmt: skip
    facts = work(plain).facts
    assert facts is not None and facts.context is None
