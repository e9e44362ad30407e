from typing import Any

from celery import shared_task
from django.db import OperationalError

from apps.timeline.events import load_stored_event
from apps.timeline.services import apply_events, retry_parked_events


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def apply_events_task(events: list[dict[str, Any]]) -> dict[str, int]:
    """Apply canonical events (their JSON form, ``source`` included) and report the counts."""
    result = apply_events([load_stored_event(event) for event in events])
    return {
        "applied": len(result.applied),
        "duplicates": len(result.duplicates),
        "parked": len(result.parked),
        "rejected": len(result.rejected),
    }


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def retry_parked_events_task() -> dict[str, int]:
    """Periodic: re-apply parked events whose reference appeared while they were being parked."""
    result = retry_parked_events()
    return {"applied": len(result.applied), "parked": len(result.parked)}
