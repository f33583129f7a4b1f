"""The queue database's schema, versioned, and the migrations that bring an older file up to date.

`migrate(conn)` runs at every start. Each entry of `MIGRATIONS` takes the database from version i to i+1;
the version lives in SQLite's own `user_version` pragma, so a half-applied migration (a crash mid-way) is
rolled back with its transaction and simply runs again.
"""

from __future__ import annotations

import sqlite3

SCHEMA_V1 = """
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    bucket      TEXT    NOT NULL,
    relpath     TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    output_path TEXT    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'file',
    sha256      TEXT,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    kills       INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    lease_until REAL,
    not_before  REAL,
    created_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL,
    last_error  TEXT,
    record      TEXT,
    UNIQUE (bucket, relpath, size, mtime_ns, inode)
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE TABLE records (
    name       TEXT    PRIMARY KEY,
    job_id     INTEGER NOT NULL,
    kind       TEXT    NOT NULL,          -- SUCCESS | ERROR
    state      TEXT    NOT NULL,          -- the job state it recorded: done | failed | quarantined
    category   TEXT,
    severity   TEXT,
    bucket     TEXT    NOT NULL,
    relpath    TEXT    NOT NULL,
    timestamp  REAL    NOT NULL,
    message    TEXT,
    superseded INTEGER NOT NULL DEFAULT 0  -- an operator retried the job after this record
);
CREATE INDEX records_by_time ON records (timestamp);
CREATE INDEX records_by_job ON records (job_id);
"""

#: v2, the trackers' columns (`coordinator.error_stats`, `ob-ctl errors resolve`, `ob-ctl report`): which
#: component ended the job, whether an operator marked the error resolved and when, and of a SUCCESS record
#: its processing time, size, skill and file type. Rows indexed before keep NULLs (and `resolved` 0).
SCHEMA_V2 = """
ALTER TABLE records ADD COLUMN component   TEXT;
ALTER TABLE records ADD COLUMN resolved    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN resolved_at REAL;
ALTER TABLE records ADD COLUMN duration_s  REAL;
ALTER TABLE records ADD COLUMN bytes       INTEGER;
ALTER TABLE records ADD COLUMN skill       TEXT;
ALTER TABLE records ADD COLUMN file_type   TEXT;
"""

MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was written by a newer Open Buckets; we refuse to guess at it."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; return the version it had before."""
    (before,) = conn.execute("PRAGMA user_version").fetchone()
    if before > SCHEMA_VERSION:
        raise SchemaTooNew(f"queue database has schema v{before}; this version knows up to v{SCHEMA_VERSION}")
    for version in range(before, SCHEMA_VERSION):
        # One transaction per step (DDL is transactional in SQLite): all of it or none of it.
        conn.executescript(f"BEGIN; {MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; COMMIT;")
    return int(before)
