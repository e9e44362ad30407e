"""The production web server: gunicorn keeps a set of uvicorn worker processes (HTTP and the
websockets of live pages, each process the whole ASGI application) and restarts any that dies.

``WEB_CONCURRENCY`` processes (by default the cores plus one) share the port: while one waits on
PostgreSQL another works. Measured with ``make bench-serving`` on two cores, three processes took
the most signed webhooks (1,033/s; two 941, five 943, eight 932, with a worse p99).
"""

import os

# Each process keeps a few PostgreSQL connections open and lends them to requests (settings.py).
os.environ.setdefault("DATABASE_POOL", "true")

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104 (in a container)
workers = int(os.environ.get("WEB_CONCURRENCY") or (os.cpu_count() or 1) + 1)
worker_class = "uvicorn_worker.UvicornWorker"
wsgi_app = "controltower.asgi:application"
# Long enough for the largest upload, short enough that a stuck worker is replaced.
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Processes are recycled now and then, so a slow leak never grows without bound.
max_requests = 20_000
max_requests_jitter = 2_000
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
