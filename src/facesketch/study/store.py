"""A study folder: study.json (items and the images' ids), images/<id>.png, answers.sqlite.

Every choice is one row written as it is made. SQLite in WAL mode with a busy timeout and one
connection per request lets two participants answer at once without losing a row; the
(participant, item) key makes a repeated submission (a reload, a double click) a no-op.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from facesketch.errors import DataError

STUDY_FILE = "study.json"
DB_FILE = "answers.sqlite"
IMAGE_DIR = "images"
IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
PARTICIPANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL,
    item INTEGER NOT NULL,
    shown_order TEXT NOT NULL,      -- JSON list of methods, left to right as shown
    choice TEXT NOT NULL,           -- the method chosen
    position INTEGER NOT NULL,      -- where it was shown (0 = left)
    shown_at REAL NOT NULL,         -- unix time the page was rendered
    answered_at REAL NOT NULL,      -- unix time the answer arrived
    PRIMARY KEY (participant, item)
)
"""


def load_study(folder: Path) -> dict:
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise DataError(f"{path}: not a study folder (make one with `facesketch study create`)")
    return json.loads(path.read_text())


def connect(folder: Path) -> sqlite3.Connection:
    con = sqlite3.connect(Path(folder) / DB_FILE, timeout=30, isolation_level=None)
    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # persistent: set once, by the first connection
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(SCHEMA)
    con.execute("PRAGMA synchronous=FULL")
    return con


def record(folder: Path, participant: str, item: int, shown_order: list[str], position: int, shown_at: float,
           answered_at: float) -> bool:
    """Store one answer; False when this participant had already answered this item."""
    con = connect(folder)
    try:
        cur = con.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (participant, item, json.dumps(shown_order), shown_order[position], position, shown_at,
                           answered_at))
        return cur.rowcount == 1
    finally:
        con.close()


def answered(folder: Path, participant: str) -> set[int]:
    con = connect(folder)
    try:
        return {r[0] for r in con.execute("SELECT item FROM answers WHERE participant = ?", (participant,))}
    finally:
        con.close()


def all_answers(folder: Path):
    import pandas as pd

    con = connect(folder)
    try:
        return pd.read_sql_query("SELECT * FROM answers ORDER BY participant, item", con)
    finally:
        con.close()
