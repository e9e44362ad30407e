"""Open case counts for the navigation: one query, run only when a page shows them."""

from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.exceptions.models import Queue
from apps.exceptions.selectors import MINE, NAV_COUNT_LIMIT, open_counts


def shown(count: int) -> str:
    """A count as shown: "1,000+" past the limit the counts stop at."""
    return f"{NAV_COUNT_LIMIT:,}+" if count > NAV_COUNT_LIMIT else f"{count:,}"


@dataclass(frozen=True)
class QueueCount:
    code: str
    label: str
    count: int

    @property
    def shown(self) -> str:
        return shown(self.count)


@dataclass(frozen=True)
class QueueCounts:
    queues: list[QueueCount]
    mine: int

    @property
    def total(self) -> str:
        total = sum(min(queue.count, NAV_COUNT_LIMIT) for queue in self.queues)
        return f"{total:,}+" if any(queue.count > NAV_COUNT_LIMIT for queue in self.queues) else f"{total:,}"

    @property
    def mine_shown(self) -> str:
        return shown(self.mine)


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
