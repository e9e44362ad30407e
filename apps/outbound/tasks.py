from celery import shared_task

from apps.outbound import notifications, services


@shared_task(acks_late=True, ignore_result=True)
def endpoint_drain_task(endpoint_id: int) -> None:
    """Send what is due to one endpoint; retries are scheduled in the database, not here (see
    deliveries_sweep)."""
    services.endpoint_drain(endpoint_id=endpoint_id)


@shared_task(acks_late=True, ignore_result=True)
def notifications_send_task() -> None:
    notifications.notifications_send()


@shared_task(ignore_result=True)
def outbound_sweep_task() -> None:
    """Periodic: deliveries and customer e-mails that are due (retries, senders that died)."""
    services.deliveries_sweep()
    notifications.notifications_send()


@shared_task(ignore_result=True)
def outbound_prune_task() -> dict[str, int]:
    """Daily: the retention rule of the delivery log (see deliveries_prune)."""
    pruned = services.deliveries_prune()
    return {"deliveries": pruned.deliveries, "events": pruned.events}
