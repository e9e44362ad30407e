"""Django's Redis cache, with one client (and so one connection pool) per process.

Under ASGI Django makes a new cache object for every request, and each would open its own
connection to Redis: a TCP handshake and a ``SELECT`` per request, a tenth of a signed webhook's
cost. Here every cache object of one location and options shares the same client.
"""

import threading
from functools import cached_property

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[tuple[str, ...], RedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (*self._servers, repr(sorted(self._options.items())))
        with _lock:
            if key not in _clients:
                _clients[key] = self._class(self._servers, **self._options)
            return _clients[key]
