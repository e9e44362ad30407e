"""What other apps do with an apply, without the core knowing them.

``settings.TIMELINE_REACTIONS`` names the reactions by dotted path; each is marked with
``@reaction`` and runs in one of two phases, in the order the setting lists them:

- ``IN_TRANSACTION``: inside the apply's transaction, once per ``apply_events`` call, with the
  milestones it recorded (billing's projections, the transactional outbox);
- ``AFTER_COMMIT``: once per committed unit of work, over every order and shipment it touched
  (invoice rules, exception detection, KPIs, live updates). An orchestrator that applies several
  batches in one transaction (a whole message, a micro-batch of webhooks) wraps them in
  ``collecting()`` so these run once for all of them; a bulk load of many units of work
  (``ingest --sync`` over a folder) uses ``reacting_every()`` to react to them in rounds.

Follow-up work that many units of a round ask for (a KPI drain) is asked for with
``once_reactions_are_done()``: it runs once, after the round's reactions.

Adding a reaction is one line of configuration; the apply path imports none of them.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from time import monotonic

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from apps.timeline.models import Milestone
from apps.timeline.stages import timed

logger = logging.getLogger(__name__)


class Phase(StrEnum):
    IN_TRANSACTION = "in_transaction"
    AFTER_COMMIT = "after_commit"


@dataclass
class Touched:
    """The subjects a unit of work changed; ``milestones`` only within the apply's transaction."""

    order_ids: set[int] = field(default_factory=set)
    shipment_ids: set[int] = field(default_factory=set)
    milestones: list[Milestone] = field(default_factory=list)
    # Asked for by the unit of work or its reactions, with the stage their time counts under;
    # each runs once, after the reactions.
    follow_ups: dict[Callable[[], None], str] = field(default_factory=dict)

    def add(self, other: "Touched") -> None:
        self.order_ids |= other.order_ids
        self.shipment_ids |= other.shipment_ids
        self.follow_ups |= other.follow_ups

    def has_subjects(self) -> bool:
        return bool(self.order_ids or self.shipment_ids)


Reaction = Callable[[Touched], None]


def reaction(*, phase: Phase, stage: str) -> Callable[[Reaction], Reaction]:
    """Mark a function as a reaction of ``phase``; its time is counted under ``stage``."""

    def mark(func: Reaction) -> Reaction:
        func.phase, func.stage = phase, stage  # type: ignore[attr-defined]
        return func

    return mark


_collector: ContextVar[Touched | None] = ContextVar("timeline_reactions_collector", default=None)


@cache
def _load(paths: tuple[str, ...]) -> tuple[Reaction, ...]:
    loaded = tuple(import_string(path) for path in paths)
    unmarked = [path for path, func in zip(paths, loaded, strict=True) if not hasattr(func, "phase")]
    if unmarked:
        raise TypeError(f"TIMELINE_REACTIONS names functions not marked with @reaction: {', '.join(unmarked)}")
    return loaded


def registered(phase: Phase) -> list[Reaction]:
    return [func for func in _load(tuple(settings.TIMELINE_REACTIONS)) if func.phase == phase]  # type: ignore[attr-defined]


def run_in_transaction(touched: Touched) -> None:
    """The reactions atomic with the apply: a failure rolls the apply back."""
    for func in registered(Phase.IN_TRANSACTION):
        with timed(func.stage):  # type: ignore[attr-defined]
            func(touched)


def _react_after_commit(touched: Touched) -> None:
    """Each reaction on its own: a failure is logged, the others still run, and the periodic
    sweeps catch up on what it missed. Then the follow-ups asked for, once each.

    A reaction may apply events itself (invoice rules invoice the touched orders): those
    subjects are collected and reacted to in one more round, unless this round already covers
    them, so an invoiced order is not detected and refreshed twice."""
    nested = Touched(follow_ups=touched.follow_ups)
    if touched.has_subjects():
        token = _collector.set(nested)
        try:
            _run_each(touched)
        finally:
            _collector.reset(token)
    if nested.order_ids - touched.order_ids or nested.shipment_ids - touched.shipment_ids:
        _react_after_commit(nested)
    else:
        _run_follow_ups(nested.follow_ups)


def _run_each(touched: Touched) -> None:
    for func in registered(Phase.AFTER_COMMIT):
        with timed(func.stage):  # type: ignore[attr-defined]
            try:
                func(touched)
            except Exception:
                logger.exception("reaction %s failed for %d orders", func.__qualname__, len(touched.order_ids))


def _run_follow_ups(follow_ups: dict[Callable[[], None], str]) -> None:
    for func, stage in follow_ups.items():
        with timed(stage):
            try:
                func()
            except Exception:
                logger.exception("follow-up %s failed", func.__qualname__)


def after_commit(touched: Touched) -> None:
    """Run the after-commit reactions over ``touched`` once the transaction commits, or hand
    the subjects to the enclosing ``collecting()`` block."""
    collector = _collector.get()
    if collector is not None:
        collector.add(touched)
        return
    if not (touched.has_subjects() or touched.follow_ups):
        return
    subjects = Touched(
        order_ids=set(touched.order_ids), shipment_ids=set(touched.shipment_ids), follow_ups=dict(touched.follow_ups)
    )
    transaction.on_commit(lambda: _react_after_commit(subjects))


def once_reactions_are_done(func: Callable[[], None], *, stage: str) -> None:
    """Run ``func`` once the current unit of work's (or round's) reactions are done, however many
    times it is asked for meanwhile; outside one, once the transaction commits. Its time in a
    round counts under ``stage``."""
    collector = _collector.get()
    if collector is None:
        transaction.on_commit(func)
    else:
        collector.follow_ups[func] = stage


@contextmanager
def collecting() -> Iterator[Touched]:
    """Gather the subjects of every apply in the block; react to all of them once, on commit.

    The reactions are scheduled even when the block raises: if the transaction around it rolls
    back, Django drops them with it; if the caller catches the error and commits what was
    applied, they run.
    """
    outer = _collector.get()
    if outer is not None:
        yield outer
        return
    collected = Touched()
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)
        after_commit(collected)


@contextmanager
def reacting_every(seconds: float) -> Iterator[Callable[[], None]]:
    """Collect the subjects of many units of work and react to them together, in rounds of at
    least ``seconds`` and once more at the end.

    For bulk loads: an order whose events are spread over ten files of a load is detected and
    counted once a round, not once a file. Call the yielded ``checkpoint()`` between units of
    work, outside their transactions; it ends the round once ``seconds`` have passed.
    """
    stack = ExitStack()
    round_started = monotonic()

    def checkpoint() -> None:
        nonlocal round_started
        if monotonic() - round_started >= seconds:
            stack.close()
            stack.enter_context(collecting())
            round_started = monotonic()

    with stack:
        stack.enter_context(collecting())
        yield checkpoint
