"""A database that cannot be reached or used right now: which errors mean that, and what a client is told."""

from __future__ import annotations

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# The database cannot be reached or used right now (down, restarting, locked, pool exhausted, a failed commit);
# a constraint violation or a bug is not in this list and stays an internal error.
DATABASE_DOWN: tuple[type[Exception], ...] = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
DATABASE_RETRY_AFTER = 5
DATABASE_UNAVAILABLE = "database_unavailable"


def database_down_message(method: str) -> str:
    """What a client is told when the database is down: nothing is promised that may not be true."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return "the database is unavailable right now; try again in a moment"
    # Usually the first write failed; when the database went down mid-turn, the message may be stored
    # without its reply. Either way a resend (same client_message_id) completes it exactly once.
    return ("the database is unavailable, so what you sent could not be stored (or not completely); "
            "send it again in a moment")
