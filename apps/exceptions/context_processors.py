"""Open case counts for the navigation: one query, run only when a page shows them."""

from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.exceptions.models import Queue
from apps.exceptions.selectors import MINE, open_counts


@dataclass(frozen=True)
class QueueCount:
    code: str
    label: str
    count: int


@dataclass(frozen=True)
class QueueCounts:
    queues: list[QueueCount]
    mine: int

    @property
    def total(self) -> int:
        return sum(queue.count for queue in self.queues)


def queue_counts(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("exceptions.view_exceptioncase"):
        return {}

    def load() -> QueueCounts:
        counts = open_counts(user=user)
        return QueueCounts(
            queues=[QueueCount(code, label, counts[code]) for code, label in Queue.choices], mine=counts[MINE]
        )

    return {"case_counts": SimpleLazyObject(load)}
