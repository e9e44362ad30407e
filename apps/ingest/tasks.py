from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError

from apps.ingest import polling, services

# Two workers applying overlapping subjects at once can collide on a unique or foreign key (one
# moves a milestone's reports while the other reports it too). Applying is idempotent, so the
# retry, which sees what the other committed, converges like any redelivery.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, IntegrityError, ConnectionError, TimeoutError)


class ProcessMessage(Task):
    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Retries exhausted: the messages still waiting stay, as failed dead letters with the last error."""
        for message_id in [args[0], *(args[1] if len(args) > 1 else [])]:
            services.message_fail(message_id, f"gave up after {self.request.retries + 1} attempts: {exc!r}")


@shared_task(
    base=ProcessMessage,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=settings.INGEST_SOFT_TIME_LIMIT,
    time_limit=settings.INGEST_TIME_LIMIT,
)
def process_message_task(message_id: int, more: list[int] | None = None) -> dict[str, Any] | None:
    """Process ``message_id`` (and each of ``more`` that no other worker took meanwhile), each with
    the companions waiting in its queue. The answer is the first message's."""
    first = None
    for index, pk in enumerate([message_id, *(more or [])]):
        try:
            outcome = services.message_process(pk, companions=services.MICRO_BATCH_MESSAGES - 1)
        except SoftTimeLimitExceeded:
            services.message_time_out(pk, settings.INGEST_SOFT_TIME_LIMIT)
            return {"status": "dead", "applied": 0, "duplicates": 0} if index == 0 else first
        if index == 0 and outcome is not None:
            message = outcome.message
            first = {"status": message.status, "applied": outcome.applied, "duplicates": outcome.duplicates}
    return first


@shared_task
def requeue_stuck_messages_task() -> int:
    return services.messages_requeue_stuck()


@shared_task
def poll_inboxes_task() -> int:
    return services.inbox_poll()


@shared_task
def poll_carriers_task() -> int:
    """Fan out: one task per active poll channel, so one slow carrier never delays the others."""
    channel_ids = list(polling.pollable_channels().values_list("pk", flat=True))
    for channel_id in channel_ids:
        poll_carrier_channel_task.apply_async(args=[channel_id], queue="bulk")
    return len(channel_ids)


@shared_task
def poll_carrier_channel_task(channel_id: int) -> dict[str, Any] | None:
    channel = polling.pollable_channels().filter(pk=channel_id).first()
    return polling.poll_carrier_channel(channel).as_dict() if channel else None
