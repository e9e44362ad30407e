from celery import shared_task

from apps.predictions.services import backtest_run, predictions_refresh_all


@shared_task(acks_late=True, ignore_result=True)
def refresh_predictions_task() -> int:
    """Periodic: learn from the latest deliveries, and move every open shipment's risk with the clock."""
    return predictions_refresh_all()


@shared_task(acks_late=True, ignore_result=True)
def backtest_task() -> int:
    """Nightly: score the predictions on the deliveries so far, for the dashboard."""
    return backtest_run().pk
