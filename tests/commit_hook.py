"""Hold or fail the commit of a turn's first write (the visitor's message) until the model has been asked.

A listener on the engine's `commit` event, armed for one commit on the turn's database threads (the runtime's
other work, on other threads, is left alone). It waits until `asked` is set (by the fake model when a request
reaches it), records whether that happened, and then lets the commit go on or fails it as a disk or a lost
connection would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

WAIT_SECONDS = 20


class CommitHook:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.asked = threading.Event()
        self.armed = False
        self.asked_while_committing: list[bool] = []

    def arm(self) -> None:
        """Hold the next commit of a turn's database thread."""
        self.armed = True

    def __call__(self, _connection: object) -> None:
        if not self.armed or not threading.current_thread().name.startswith("supportbot-db"):
            return
        self.armed = False
        self.asked_while_committing.append(self.asked.wait(WAIT_SECONDS))
        if self.fail:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


@contextmanager
def commit_hook(engine: Engine, fail: bool = False) -> Iterator[CommitHook]:
    hook = CommitHook(fail)
    event.listen(engine, "commit", hook)
    try:
        yield hook
    finally:
        event.remove(engine, "commit", hook)
