from celery import shared_task

from apps.outbound import notifications, services


@shared_task(acks_late=True, ignore_result=True)
def deliver_task(delivery_ids: list[int]) -> None:
    """Send deliveries of one subscription in turn; retries are scheduled in the database, not here
    (see deliveries_sweep)."""
    for delivery_id in delivery_ids:
        services.delivery_send(delivery_id)


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
