"""The experiment guard: an arm clearly worse than control on escalations or thumbs-down is taken out of traffic.

The test is a mixture sequential probability ratio test (mSPRT, Johari et al. 2017) on the difference of two
rates: its likelihood ratio stays under 1/alpha over *all* looks with probability at least 1 - alpha when the
arm is no worse, so the guard may look every few minutes for as long as the experiment runs. Each of the two
metrics is tested at alpha / 2, so an arm that is no worse is stopped with probability at most alpha.

A stop is an `ArmStop` row (audited); while it is not lifted, new conversations that would draw the arm get
the label's control version (`PromptRegistry.arm`); conversations already on it keep it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import Conflict, NotFound, Unprocessable
from .experiment_figures import GuardCounts, guard_counts
from .models import ArmStop, utcnow
from .periodic import every
from .prompts import PromptRegistry, Split, StoppedArms
from .review import audit

log = logging.getLogger(__name__)

GUARD_ACTOR = "guard"
MIXTURE_SD = 0.05  # the spread of harmful effects the test is tuned for: a few points of escalation rate
GUARDED = (("escalation", "escalated"), ("thumbs_down", "thumbs_down"))  # metric -> GuardCounts field


@dataclass(frozen=True, slots=True)
class SequentialTest:
    """One look of the mSPRT: the arm's rate minus control's, the log likelihood ratio, and the bound."""

    control_rate: float
    arm_rate: float
    difference: float
    log_ratio: float
    bound: float  # log(1 / alpha)
    worse: bool  # the arm's rate is higher and the ratio is past the bound


def msprt(control: tuple[int, int], arm: tuple[int, int], alpha: float, tau: float = MIXTURE_SD) -> SequentialTest:
    """Test whether the arm's rate (events, conversations) is above control's, valid under repeated looks.

    Normal mixture over the difference (sd `tau`) with the pooled rate's variance, as the null has both rates
    equal. Only a higher arm rate can stop it; that is a subset of the two-sided test's rejections, so the
    chance of a false stop over all looks stays at most `alpha`.
    """
    (k1, n1), (k2, n2) = control, arm
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    difference = p2 - p1
    bound = math.log(1 / alpha)
    if variance <= 0:
        return SequentialTest(p1, p2, difference, 0.0, bound, False)
    spread = tau * tau
    log_ratio = 0.5 * math.log(variance / (variance + spread)) \
        + spread * difference * difference / (2 * variance * (variance + spread))
    return SequentialTest(p1, p2, difference, log_ratio, bound, difference > 0 and log_ratio >= bound)


class ArmStops:
    """The `arm_stops` table: stop and lift arms (audited), and the set of stopped arms, cached briefly."""

    def __init__(self, sessions: sessionmaker[Session], refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, StoppedArms] | None = None

    def current(self) -> StoppedArms:
        """(prompt, label, version) of every arm out of traffic; read at most every `refresh` seconds per process."""
        now = self._clock()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self.refresh:
                return self._cached[1]
        with self.sessions() as session:
            rows = session.execute(select(ArmStop.prompt, ArmStop.label, ArmStop.version)
                                   .where(ArmStop.lifted_at.is_(None))).all()
        stopped: StoppedArms = frozenset((str(p), str(lab), str(v)) for p, lab, v in rows)
        with self._lock:
            self._cached = (now, stopped)
        return stopped

    def active(self, prompt: str | None = None, label: str | None = None) -> list[ArmStop]:
        """Stops not lifted, oldest first."""
        query = select(ArmStop).where(ArmStop.lifted_at.is_(None)).order_by(ArmStop.id)
        if prompt is not None:
            query = query.where(ArmStop.prompt == prompt)
        if label is not None:
            query = query.where(ArmStop.label == label)
        with self.sessions() as session:
            return list(session.scalars(query))

    def stop(self, prompt: str, label: str, version: str, *, metric: str, details: dict[str, Any],
             actor: str) -> ArmStop | None:
        """Take an arm out of traffic; None when it already is (so replicas racing to stop it stop it once)."""
        with transaction(self.sessions) as session:
            _lock_arm(session, prompt, label, version)
            if session.scalar(_active_stop(prompt, label, version)) is not None:
                return None
            row = ArmStop(prompt=prompt, label=label, version=version, metric=metric, details=details,
                          stopped_by=actor, stopped_at=utcnow())
            session.add(row)
            audit(session, actor, "experiment.stop", f"{prompt}@{version}",
                  {"label": label, "metric": metric, **details})
            session.flush()
            session.expunge(row)
        self._cached = None
        return row

    def lift(self, prompt: str, label: str, version: str, actor: str) -> int:
        """Put a stopped arm back into traffic (new conversations draw it again); NotFound when it is not stopped."""
        with transaction(self.sessions) as session:
            _lock_arm(session, prompt, label, version)
            result = session.execute(
                update(ArmStop).where(ArmStop.prompt == prompt, ArmStop.label == label, ArmStop.version == version,
                                      ArmStop.lifted_at.is_(None))
                .values(lifted_at=utcnow(), lifted_by=actor))
            lifted = int(getattr(result, "rowcount", 0) or 0)
            if not lifted:
                raise NotFound(f"{prompt}@{version} is not stopped in label '{label}'", code="not_stopped")
            audit(session, actor, "experiment.resume", f"{prompt}@{version}", {"label": label})
        self._cached = None
        return lifted


def _active_stop(prompt: str, label: str, version: str) -> Any:
    return select(ArmStop.id).where(ArmStop.prompt == prompt, ArmStop.label == label, ArmStop.version == version,
                                    ArmStop.lifted_at.is_(None)).limit(1)


def _lock_arm(session: Session, prompt: str, label: str, version: str) -> None:
    """On PostgreSQL, one transaction at a time looks at an arm's stops (SQLite has one writer anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"arm_stop:{prompt}:{label}:{version}"})


def find_arm(prompts: PromptRegistry, label: str, version: str, prompt: str | None = None) -> tuple[str, Split]:
    """The prompt name whose `label` splits traffic over `version`, with the split; a clear error otherwise."""
    splits = {name: labels[label] for name, labels in prompts.splits().items() if label in labels
              and (prompt is None or name == prompt)}
    if not splits:
        where = f"prompt '{prompt}'" if prompt else "any prompt"
        raise NotFound(f"label '{label}' splits no traffic in {where}", code="no_split")
    having = {name: split for name, split in splits.items() if version in dict(split.weights)}
    if not having:
        raise NotFound(f"'{version}' is not an arm of label '{label}' (arms: "
                       + "; ".join(f"{name}: {split.describe()}" for name, split in sorted(splits.items())) + ")",
                       code="unknown_arm")
    if len(having) > 1:
        raise Unprocessable(f"several prompts split '{label}' over '{version}': name one with --prompt "
                            f"({', '.join(sorted(having))})", code="ambiguous_arm")
    return next(iter(having.items()))


def stop_arm(stops: ArmStops, prompts: PromptRegistry, label: str, version: str, actor: str,
             prompt: str | None = None) -> ArmStop:
    """A person stops an arm by hand (metric "manual"); control cannot be stopped, nor an arm twice."""
    name, split = find_arm(prompts, label, version, prompt)
    if version == split.control:
        raise Unprocessable(f"{version} is the control of '{label}': the arms that stop fall back to it; change "
                            "labels.yaml to serve another version", code="control_arm")
    row = stops.stop(name, label, version, metric="manual", details={}, actor=actor)
    if row is None:
        raise Conflict(f"{name}@{version} is already stopped in label '{label}'", code="already_stopped")
    return row


class ExperimentGuard:
    """Looks at every split label and stops each arm whose escalation or thumbs-down rate is clearly worse."""

    def __init__(self, sessions: sessionmaker[Session], prompts: PromptRegistry, stops: ArmStops, *,
                 alpha: float, min_conversations: int, tau: float = MIXTURE_SD) -> None:
        self.sessions = sessions
        self.prompts = prompts
        self.stops = stops
        self.alpha = alpha
        self.min_conversations = min_conversations
        self.tau = tau

    def check(self) -> list[ArmStop]:
        """One look at every experiment; the stops it made."""
        made = []
        stopped = self.stops.current()
        for name, splits in sorted(self.prompts.splits().items()):
            for label, split in sorted(splits.items()):
                refs = [f"{name}@{version}" for version, _ in split.weights]
                with self.sessions() as session:
                    counts = guard_counts(session, refs)
                control = counts.get(f"{name}@{split.control}")
                for version, _ in split.weights[1:]:
                    arm = counts.get(f"{name}@{version}")
                    if (name, label, version) in stopped or control is None or arm is None:
                        continue
                    row = self._look(name, label, version, control, arm)
                    if row is not None:
                        made.append(row)
        return made

    def _look(self, name: str, label: str, version: str, control: GuardCounts, arm: GuardCounts) -> ArmStop | None:
        if min(control.conversations, arm.conversations) < self.min_conversations:
            return None
        for metric, field in GUARDED:
            test = msprt((getattr(control, field), control.conversations), (getattr(arm, field), arm.conversations),
                         self.alpha / len(GUARDED), self.tau)
            if test.worse:
                details = {"control": asdict(control), "arm": asdict(arm), **asdict(test),
                           "alpha": self.alpha, "tau": self.tau}
                row = self.stops.stop(name, label, version, metric=metric, details=details, actor=GUARD_ACTOR)
                if row is not None:
                    log.warning("experiment guard stopped %s@%s in label %s: %s %.1f %% vs control %.1f %% "
                                "(log ratio %.2f over bound %.2f)", name, version, label, metric,
                                test.arm_rate * 100, test.control_rate * 100, test.log_ratio, test.bound)
                return row
        return None

    async def run(self, interval: float) -> None:
        """Look every `interval` seconds until cancelled."""
        await every(interval, self.check, "experiment guard")
