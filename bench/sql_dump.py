"""The floor for export: every row of the tables the export reads, by SELECT *, streamed to a TSV file.

`python -m bench.sql_dump DATABASE_URL FILE` (sqlite:///... or postgresql+psycopg://...).
"""

from __future__ import annotations

import csv
import sys

TABLES = ("prompt_snapshots", "conversations", "messages", "feedback", "corrections", "escalations")


def dump(url: str, path: str) -> int:
    """Write every row; return how many."""
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        if url.startswith("sqlite:///"):
            import sqlite3

            connection = sqlite3.connect(url.removeprefix("sqlite:///"))
            for table in TABLES:
                for row in connection.execute(f"SELECT * FROM {table}"):
                    writer.writerow(row)
                    rows += 1
            connection.close()
            return rows
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as postgres:
            for table in TABLES:
                # A named (server-side) cursor streams instead of loading the table into memory.
                with postgres.cursor(name=f"dump_{table}") as cursor:
                    cursor.itersize = 5000
                    cursor.execute(f"SELECT * FROM {table}")
                    for row in cursor:
                        writer.writerow(row)
                        rows += 1
    return rows


if __name__ == "__main__":
    print(f"{dump(sys.argv[1], sys.argv[2])} rows", file=sys.stderr)
