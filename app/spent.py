"""The pod's set of spent receipt rows: shared by its gunicorn workers, bounded, forgetting what has expired.

The workers are processes forked from one master, restarted at any time, so the set lives in a file: an SQLite
database on the pod's memory volume (the multiprocess directory's emptyDir), which every worker opens and
SQLite's own file locks keep consistent. A row is kept until its receipt expires (app/receipts.py), after which
the receipt itself is refused, so forgetting it lets nothing through twice. ``max_bytes`` bounds the file
(SQLite's ``max_page_count``): when it is full and nothing has expired, feedback is refused, never counted
twice. The set records when it began: a receipt issued before that may have been counted in a set since lost
(a wiped volume), so it is refused too.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

PAGE_BYTES = 4096
PURGE_EVERY_SECONDS = 60.0
BUSY_TIMEOUT_MS = 5000


class SpentSet:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        # The schema takes 4 pages; a few more leave room for entries.
        self._max_pages = max(8, max_bytes // PAGE_BYTES)
        self._local = threading.local()
        self._started: int | None = None
        self._last_purge = 0.0
        # Created here (in the master, before the workers fork) so that its start time is the pod's.
        self._connect().close()
        self._local.conn = None
        self._local.inode = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        # WAL: readers and the writer do not block each other, and a worker killed mid-write leaves the file whole.
        # Durability past an OS crash is moot on a memory volume.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(f"PRAGMA max_page_count = {self._max_pages}")
        conn.execute("BEGIN IMMEDIATE")
        # One entry per receipt: the rows counted, as a bit mask (a batch has at most 256 rows, so 32 bytes).
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spent (id BLOB PRIMARY KEY, expires INTEGER NOT NULL, rows BLOB NOT NULL)"
            " WITHOUT ROWID"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('started', ?)", (int(time.time()),))
        (started,) = conn.execute("SELECT value FROM meta WHERE name = 'started'").fetchone()
        conn.execute("COMMIT")
        self._started = started
        return conn

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread and process: an SQLite connection must not cross a fork. And one to the file
        # now at the path: a connection to a file deleted since (a wiped volume) would keep a set of its own
        # while the other workers start a new one, and each would take what the other counted.
        pid = os.getpid()
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        local = self._local
        if getattr(local, "pid", None) != pid or local.conn is None or local.inode != inode:
            if getattr(local, "pid", None) == pid and local.conn is not None:
                local.conn.close()
            local.conn = self._connect()
            local.pid = pid
            local.inode = os.stat(self.path).st_ino
        return local.conn

    def started(self) -> int:
        self._conn()  # the file now at the path: a new one starts now
        return self._started  # type: ignore[return-value]

    def add_all(self, entries: dict[bytes, tuple[int, int]], now: int) -> Literal["added", "replayed", "full"]:
        """Mark rows as counted, all or none: ``entries`` maps a receipt's id to (mask of rows, expiry time).
        "replayed" if any row is marked already."""
        conn = self._conn()
        if time.monotonic() - self._last_purge > PURGE_EVERY_SECONDS:
            self._purge(conn, now)
        if len(entries) == 1:
            # The usual case, one receipt not seen before: one statement, its own transaction.
            ((key, (mask, expires)),) = entries.items()
            try:
                conn.execute("INSERT INTO spent VALUES (?, ?, ?)", (key, expires, _blob(mask)))
                return "added"
            except sqlite3.IntegrityError:
                pass  # some of its rows were counted before: compare them below
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_FULL:
                    raise
        for attempt in range(2):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for key, (mask, expires) in entries.items():
                        found = conn.execute("SELECT rows FROM spent WHERE id = ?", (key,)).fetchone()
                        if found is None:
                            conn.execute("INSERT INTO spent VALUES (?, ?, ?)", (key, expires, _blob(mask)))
                            continue
                        spent = int.from_bytes(found[0], "little")
                        if spent & mask:
                            conn.execute("ROLLBACK")
                            return "replayed"
                        conn.execute("UPDATE spent SET rows = ? WHERE id = ?", (_blob(spent | mask), key))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return "added"
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_FULL:
                    raise
                if attempt:
                    return "full"
                self._purge(conn, now)
        return "full"

    def _purge(self, conn: sqlite3.Connection, now: int) -> None:
        self._last_purge = time.monotonic()
        conn.execute("DELETE FROM spent WHERE expires < ?", (now,))

    def __len__(self) -> int:
        return self._conn().execute("SELECT count(*) FROM spent").fetchone()[0]


def _blob(mask: int) -> bytes:
    return mask.to_bytes((mask.bit_length() + 7) // 8 or 1, "little")
