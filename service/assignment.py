"""Who handles a handoff: claiming, assigning, agents' availability and automatic round-robin.

A conversation's assignee (`conversations.assignee_id`) is a person who may write to visitors: an enabled
admin or agent. Reviewers never answer visitors, so they are never assignees; the shared admin token is no
person, so it can assign others but not claim.

Round-robin (SUPPORTBOT_AUTO_ASSIGN): when a handoff opens, the available enabled agent whose last handoff
is the oldest gets it, in the escalation's own transaction. The agent's turn is taken with a compare-and-set
UPDATE, so handoffs opening at once on several replicas go to different agents in turn (PostgreSQL);
SQLite has one writer at a time (the escalation already holds the write lock when the agent is picked).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import NotFound, Unprocessable
from .events import ASSIGNMENT, Event, new_event
from .models import Conversation, StaffRole, User, utcnow
from .people import Principal, normal_email
from .review import audit

log = logging.getLogger(__name__)
ROUND_ROBIN_ACTOR = "system:round-robin"  # how automatic assignment appears in the audit log
CAN_ANSWER = (StaffRole.ADMIN, StaffRole.AGENT)
MAX_ROUND_ROBIN_TRIES = 20  # each retry means a concurrent handoff took that agent first


@dataclass(frozen=True, slots=True)
class Assigned:
    """A conversation's assignee after a claim or an assignment (e-mails; None: unassigned)."""

    conversation_id: str
    assignee: str | None
    previous: str | None

    def event(self, by: str) -> Event:
        """The live event announcing this assignment (ids and e-mails only)."""
        return new_event(ASSIGNMENT, self.conversation_id, assignee=self.assignee, by=by)


class Assignments:
    """Claims, assignments and availability; every method is blocking and runs one transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def claim(self, conversation_id: str, who: Principal) -> Assigned:
        """The acting person becomes the conversation's assignee."""
        if who.user_id is None:
            raise Unprocessable("the shared admin token is no person and cannot claim; assign the conversation "
                                "to someone's e-mail instead", code="claim_needs_person")
        with transaction(self.sessions) as session:
            person = _answerer(session, session.get(User, who.user_id), who.actor)
            return _set_assignee(session, conversation_id, person, who.actor, "claim")

    def assign(self, conversation_id: str, email: str | None, actor: str) -> Assigned:
        """Assign the conversation to the person with `email` (an enabled admin or agent), or to nobody."""
        with transaction(self.sessions) as session:
            person = None
            if email is not None:
                found = session.scalars(select(User).where(User.email == normal_email(email))).first()
                person = _answerer(session, found, email)
            return _set_assignee(session, conversation_id, person, actor, "assign")

    def set_available(self, who: Principal, available: bool) -> bool:
        """Mark the acting agent (or admin) available for round-robin handoffs, or not."""
        if who.user_id is None:
            raise Unprocessable("the shared admin token is no person and takes no handoffs",
                                code="availability_needs_person")
        with transaction(self.sessions) as session:
            session.execute(update(User).where(User.id == who.user_id).values(available=available))
            audit(session, who.actor, "availability", f"user:{who.actor}", {"available": available})
        return available

    def available(self, user_id: int) -> bool:
        """Whether the person takes round-robin handoffs."""
        with self.sessions() as session:
            return bool(session.scalar(select(User.available).where(User.id == user_id)))

    def assignees(self, conversation_ids: Iterable[str]) -> dict[str, str]:
        """The assignee's e-mail of each of these conversations that has one."""
        ids = list(set(conversation_ids))
        if not ids:
            return {}
        with self.sessions() as session:
            rows = session.execute(select(Conversation.id, User.email)
                                   .join(User, User.id == Conversation.assignee_id)
                                   .where(Conversation.id.in_(ids)))
            return dict(rows.all())

    def answerers(self) -> list[User]:
        """Everyone a conversation can be assigned to (enabled admins and agents), by name."""
        with self.sessions() as session:
            return list(session.scalars(select(User).where(User.role.in_(CAN_ANSWER), User.disabled_at.is_(None))
                                        .order_by(User.name, User.email)))


def _answerer(session: Session, user: User | None, named: str) -> User:
    """`user` when it may handle a handoff, else a 422 saying why."""
    if user is None:
        raise Unprocessable(f"no person with the e-mail {named!r}", code="unknown_assignee")
    if user.disabled_at is not None:
        raise Unprocessable(f"{user.email} is disabled", code="assignee_disabled")
    if user.role not in CAN_ANSWER:
        raise Unprocessable(f"{user.email} is a {user.role}: only admins and agents answer visitors",
                            code="assignee_cannot_answer")
    return user


def _set_assignee(session: Session, conversation_id: str, person: User | None, actor: str,
                  action: str) -> Assigned:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("conversation not found")
    previous = session.get(User, conversation.assignee_id) if conversation.assignee_id is not None else None
    conversation.assignee_id = person.id if person else None
    result = Assigned(conversation_id, person.email if person else None, previous.email if previous else None)
    audit(session, actor, action, f"conversation:{conversation_id}", {"from": result.previous, "to": result.assignee})
    return result


def assign_round_robin(session: Session, conversation_id: str) -> str | None:
    """Give a newly opened handoff to the available agent served least recently; their e-mail, or None.

    Runs inside the escalation's transaction. A conversation that already has an assignee keeps them.
    """
    current = session.scalar(select(Conversation.assignee_id).where(Conversation.id == conversation_id))
    if current is not None:
        return None
    agent = _take_next_agent(session)
    if agent is None:
        return None
    agent_id, email = agent
    session.execute(update(Conversation).where(Conversation.id == conversation_id).values(assignee_id=agent_id))
    audit(session, ROUND_ROBIN_ACTOR, "assign", f"conversation:{conversation_id}",
          {"from": None, "to": email, "auto": True})
    return email


def _take_next_agent(session: Session) -> tuple[int, str] | None:
    """Mark the next agent in the rotation as just assigned; (id, e-mail), or None when nobody is available.

    Compare-and-set: the agent's turn is taken only if their `last_assigned_at` is still what was read. A
    concurrent handoff that took them first holds their row until it commits (PostgreSQL makes the UPDATE
    wait, then finds the value changed), so this one reads again and takes the next agent: the rotation
    stays fair with any number of replicas, without a lock held across statements.
    """
    eligible = (User.role == StaffRole.AGENT, User.available.is_(True), User.disabled_at.is_(None))
    for _ in range(MAX_ROUND_ROBIN_TRIES):
        # Never assigned first, then the longest since their last handoff; ids break ties (a total order).
        candidate = session.execute(
            select(User.id, User.email, User.last_assigned_at).where(*eligible)
            .order_by(User.last_assigned_at.asc().nulls_first(), User.id).limit(1)).first()
        if candidate is None:
            return None
        taken = session.execute(
            update(User).where(User.id == candidate.id, *eligible,
                               User.last_assigned_at.is_not_distinct_from(candidate.last_assigned_at))
            .values(last_assigned_at=utcnow()))
        if getattr(taken, "rowcount", 0) == 1:
            return candidate.id, candidate.email
    log.warning("round-robin: no agent could be taken after %d tries; the handoff stays unassigned",
                MAX_ROUND_ROBIN_TRIES)
    return None
