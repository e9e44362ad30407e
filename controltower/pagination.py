"""Pagination for the REST API."""

from rest_framework import pagination
from rest_framework.request import Request

# Far beyond any table we hold, far below PostgreSQL's bigint: a larger offset reads the empty end.
MAX_OFFSET = 1_000_000_000


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit and offset, bounded: an unbounded number reached PostgreSQL as a bigint out of range,
    and a huge page would cost the size of the database."""

    max_limit = 500

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
