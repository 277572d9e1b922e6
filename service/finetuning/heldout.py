"""A job's held-out cases: the corrected misses it did not train on (and those corrected since), as eval cases.

They are the export's `eval-cases` lines (question and history -> the person's answer as `reference`, redacted
like the training file), minus the replies the job trained on and minus any case whose conversation and
answer equal a trained one's (a duplicate the training export skipped is not held out: the model saw it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ..export import Exporter, ExportOptions

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def held_out_lines(sessions: sessionmaker[Session], trained_message_ids: list[int]) -> list[str]:
    """The held-out cases as `eval-cases` JSON lines, in the log's order."""
    trained = set(trained_message_ids)
    exporter = Exporter(sessions, ExportOptions(format="eval-cases", select="corrected"))
    candidates: list[tuple[str, str]] = []
    seen_in_training: set[str] = set()
    for line in exporter.lines():
        case = json.loads(line.text)
        key = json.dumps([case["messages"], case["expect"]], sort_keys=True, ensure_ascii=False)
        if line.reply_id in trained:
            seen_in_training.add(key)
        else:
            candidates.append((key, line.text))
    held: list[str] = []
    kept: set[str] = set()
    for key, text in candidates:
        if key not in seen_in_training and key not in kept:
            kept.add(key)
            held.append(text)
    return held


def job_dir(data_dir: Path, job_id: str) -> Path:
    """Where a job's files live: `<data_dir>/finetune/<job>/` (the id made safe for a path)."""
    return data_dir / "finetune" / _UNSAFE.sub("_", job_id)


def write_held_out(path: Path, lines: list[str]) -> Path:
    """Write the cases as a file `supportbot eval` reads too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path
