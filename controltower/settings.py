"""Settings, all read from environment variables (12-factor).

With no variables set, the project runs on one machine with no servers: a SQLite file under
``var/``, tasks run in-process, an in-memory channel layer and a local-memory cache. Setting
``DATABASE_URL`` and ``REDIS_URL`` moves it onto PostgreSQL and Redis.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="insecure-local-only-key" if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "template_partials",
    "channels",
    "axes",
    "controltower",
    "apps.partners",
    "apps.timeline",
    "apps.inventory",
    "apps.billing",
    "apps.ingest",
    "apps.exceptions",
    "apps.dashboards",
    "apps.outbound",
    "apps.predictions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "controltower.middleware.UserTimezoneMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controltower.urls"
WSGI_APPLICATION = "controltower.wsgi.application"
ASGI_APPLICATION = "controltower.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.exceptions.context_processors.queue_counts",
            ],
        },
    },
]

# An empty DATABASE_URL (``DATABASE_URL=`` in an env file) means the default, as when it is unset.
DATABASES = {
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'controltower.sqlite3'}")
}
if "ENGINE" not in DATABASES["default"]:
    raise ImproperlyConfigured("DATABASE_URL is not a database URL (postgres://user@host:5432/name or sqlite:///path)")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
elif env.bool("DATABASE_POOL", default=False):
    # Web processes (gunicorn.conf.py turns it on): a request borrows an open connection instead of
    # opening one, which costs PostgreSQL a new backend process each time. Under ASGI this, not
    # CONN_MAX_AGE, is how connections are kept.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=4),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "controltower.auth.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
# Everything is stored in UTC; each request is shown in the user's own zone (see middleware).
USE_TZ = True
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves hashed, compressed files collected by `collectstatic`; DEBUG and the test
# suite serve them straight from static/.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# --- Redis: broker, cache and channel layer when REDIS_URL is set ---------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "controltower.cache.SharedRedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# What the other apps do with each apply, in order (see apps/timeline/reactions.py): billing's
# projections and the outbox inside the apply's transaction; the rest once per committed batch,
# invoicing first so that detection, KPIs and live pages see the invoices it made.
TIMELINE_REACTIONS = [
    "apps.billing.reactions.project_billing",
    "apps.inventory.reactions.book_inventory",
    "apps.outbound.reactions.write_outbox",
    "apps.billing.reactions.invoice_touched_orders",
    "apps.predictions.reactions.predict_touched_shipments",
    "apps.exceptions.reactions.detect_on_touched_orders",
    "apps.dashboards.reactions.refresh_touched_kpis",
    "apps.timeline.realtime.push_live_updates",
]

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
# In-process tasks behave like queued ones: a failing task never breaks the request that queued it.
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# No task runs unbounded: at the soft limit a task gets SoftTimeLimitExceeded (processing a message
# turns it into a dead letter), at the hard limit the worker process is killed. Processing a
# message has its own pair: a file at the size limit applies for minutes.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=CELERY_TASK_SOFT_TIME_LIMIT + 60)
INGEST_SOFT_TIME_LIMIT = env.int("INGEST_SOFT_TIME_LIMIT", default=600)
INGEST_TIME_LIMIT = env.int("INGEST_TIME_LIMIT", default=INGEST_SOFT_TIME_LIMIT + 60)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "daily-digest": {
        "task": "apps.exceptions.tasks.daily_digest_task",
        "schedule": crontab(hour=env.int("DIGEST_HOUR_UTC", default=6), minute=0),
        "options": {"queue": "default"},
    },
    "invoice-sweep": {
        "task": "apps.billing.tasks.invoice_sweep_task",
        "schedule": env.int("INVOICE_SWEEP_SECONDS", default=900),
        "options": {"queue": "default"},
    },
    "detect-exceptions": {
        "task": "apps.exceptions.tasks.detect_exceptions_task",
        "schedule": env.int("EXCEPTION_SWEEP_SECONDS", default=300),
        "options": {"queue": "default"},
    },
    "stock-accuracy": {
        "task": "apps.inventory.tasks.stock_accuracy_task",
        "schedule": env.int("STOCK_ACCURACY_SECONDS", default=3600),
        "options": {"queue": "bulk"},
    },
    "requeue-stuck-messages": {
        "task": "apps.ingest.tasks.requeue_stuck_messages_task",
        "schedule": env.int("STUCK_SWEEP_SECONDS", default=300),
        "options": {"queue": "default"},
    },
    "poll-carriers": {
        "task": "apps.ingest.tasks.poll_carriers_task",
        "schedule": env.int("CARRIER_POLL_SECONDS", default=60),
        "options": {"queue": "bulk"},
    },
    "poll-inboxes": {
        "task": "apps.ingest.tasks.poll_inboxes_task",
        "schedule": env.int("INBOX_POLL_SECONDS", default=60),
        "options": {"queue": "bulk"},
    },
    "outbound-sweep": {
        "task": "apps.outbound.tasks.outbound_sweep_task",
        "schedule": env.int("OUTBOUND_SWEEP_SECONDS", default=15),
        "options": {"queue": "outbound"},
    },
    "outbound-prune": {
        "task": "apps.outbound.tasks.outbound_prune_task",
        "schedule": crontab(hour=3, minute=30),
        "options": {"queue": "outbound"},
    },
    "refresh-predictions": {
        "task": "apps.predictions.tasks.refresh_predictions_task",
        "schedule": env.int("PREDICTION_REFRESH_SECONDS", default=900),
        "options": {"queue": "bulk"},
    },
    "backtest-predictions": {
        "task": "apps.predictions.tasks.backtest_task",
        "schedule": crontab(hour=4, minute=15),
        "options": {"queue": "bulk"},
    },
    "retry-parked-events": {
        "task": "apps.timeline.tasks.retry_parked_events_task",
        "schedule": env.int("PARKED_RETRY_SECONDS", default=300),
        "options": {"queue": "default"},
    },
}

# --- Ingestion ------------------------------------------------------------------------------------
INGEST_MAX_MESSAGE_BYTES = env.int("INGEST_MAX_MESSAGE_BYTES", default=20 * 2**20)
# Request bodies up to the message limit are read whole; larger ones get a clear 413, before they
# are read (controltower/frontdoor.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_MESSAGE_BYTES + 2**20
# A web process queues the messages it stores for processing together, this often (0: one by one).
ENQUEUE_BATCH_SECONDS = env.float("ENQUEUE_BATCH_SECONDS", default=0.02)
# Requests one web process handles at once; more get 503 with Retry-After (controltower/frontdoor.py).
WEB_MAX_IN_FLIGHT = env.int("WEB_MAX_IN_FLIGHT", default=64)
INBOX_DIR = env.path("INBOX_DIR", default=VAR_DIR / "inbox")
WEBHOOK_TOLERANCE_SECONDS = env.int("WEBHOOK_TOLERANCE_SECONDS", default=300)
# How long a web process keeps a webhook channel (and its partner and secrets) between lookups: a
# deactivated partner or a rotated secret takes effect everywhere within this (at once in the
# process that made the change).
WEBHOOK_CHANNEL_CACHE_SECONDS = env.float("WEBHOOK_CHANNEL_CACHE_SECONDS", default=1.0)
# Events dated further ahead than this are refused: a date a year ahead would win every later
# correction (an invoice "released" next year beats this week's hold). A day covers clock skew
# and local times sent without their zone.
EVENT_FUTURE_MARGIN_SECONDS = env.int("EVENT_FUTURE_MARGIN_SECONDS", default=24 * 3600)
# After a webhook secret is rotated, signatures made with the one it replaced verify this long.
SECRET_ROTATION_GRACE_SECONDS = env.int("SECRET_ROTATION_GRACE_SECONDS", default=24 * 3600)

# --- Requests we make: subscriptions and carrier tracking pull (apps/partners/network.py) -------
# Loopback, private, link-local (cloud metadata), multicast, reserved and shared addresses are
# refused at connect time unless listed here: host names ("wms.corp.example", ".corp.example" with
# its subdomains), addresses or networks ("10.20.0.0/16", "fd00::/8"). Plain http is sent only in
# development (DEBUG) or to an entry written with it ("http://wms.corp.example", "http://10.20.0.0/16").
NETWORK_TRUSTED_TARGETS = env.list("NETWORK_TRUSTED_TARGETS", default=[])
# Replies are read up to these sizes (a subscriber's answer is only logged; a carrier's is stored).
OUTBOUND_MAX_RESPONSE_BYTES = env.int("OUTBOUND_MAX_RESPONSE_BYTES", default=64 * 1024)
POLL_MAX_RESPONSE_BYTES = env.int("POLL_MAX_RESPONSE_BYTES", default=2**20)

# --- Outbound: deliveries to subscribers ------------------------------------------------------------
# Retries wait base * 2^(attempt - 1) seconds (capped), with jitter; beat sends what is due.
OUTBOUND_RETRY_BASE_SECONDS = env.float("OUTBOUND_RETRY_BASE_SECONDS", default=30)
OUTBOUND_RETRY_MAX_SECONDS = env.float("OUTBOUND_RETRY_MAX_SECONDS", default=3600)
# After this many consecutive failures an endpoint's breaker opens for the cooldown (doubling
# with each consecutive opening, up to the retry cap), then lets one probe through.
OUTBOUND_BREAKER_THRESHOLD = env.int("OUTBOUND_BREAKER_THRESHOLD", default=5)
OUTBOUND_BREAKER_COOLDOWN_SECONDS = env.float("OUTBOUND_BREAKER_COOLDOWN_SECONDS", default=60)
# A sender that has not finished within its timeout plus this grace is presumed dead.
OUTBOUND_CLAIM_GRACE_SECONDS = env.float("OUTBOUND_CLAIM_GRACE_SECONDS", default=30)
# When set, subscriptions may send only to these hosts (".example.com" includes its subdomains);
# empty: to any host the network guard allows (public ones, and the trusted targets above).
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=[])
# Delivered deliveries (and their attempt log) are deleted this long after delivery; dead letters stay.
OUTBOUND_RETENTION_DAYS = env.int("OUTBOUND_RETENTION_DAYS", default=30)
# Per-channel outbox folders (<OUTBOX_DIR>/<partner>/<channel>/) for an SFTP relay to pick up.
OUTBOX_DIR = env.path("OUTBOX_DIR", default=VAR_DIR / "outbox")
# Our interchange id on outbound X12 (ISA05:ISA06 and GS02).
EDI_SENDER_ID = env.str("EDI_SENDER_ID", default="ZZ:CONTROLTOWER")
# Our interchange sender on outbound EDIFACT, such as the CONTRL acknowledging an interchange
# (UNB S002: 0004 id, an..35; 0007 qualifier, an..4, ZZZ mutually defined, 14 GS1 GLN, 1 DUNS).
EDIFACT_SENDER_ID = env.str("EDIFACT_SENDER_ID", default="CONTROLTOWER")
EDIFACT_SENDER_QUALIFIER = env.str("EDIFACT_SENDER_QUALIFIER", default="ZZZ")
if not 0 < len(EDIFACT_SENDER_ID) <= 35 or len(EDIFACT_SENDER_QUALIFIER) > 4:
    raise ImproperlyConfigured(
        f"EDIFACT_SENDER_ID {EDIFACT_SENDER_ID!r} / EDIFACT_SENDER_QUALIFIER {EDIFACT_SENDER_QUALIFIER!r}: "
        "expected an id of 1 to 35 characters and a qualifier of at most 4"
    )
# Customer tracking links stay valid this long unless revoked.
TRACKING_LINK_DAYS = env.int("TRACKING_LINK_DAYS", default=30)

# --- Dashboards and monitoring ----------------------------------------------------------------------
# KPI days are calendar days in this zone (an order shipped at 23:30 in Paris counts for that day).
KPI_TIME_ZONE = env.str("KPI_TIME_ZONE", default=TIME_ZONE)
# /metrics answers a request carrying "Authorization: Bearer <METRICS_TOKEN>" or coming straight
# (REMOTE_ADDR, never a forwarded address) from one of METRICS_ALLOWED_IPS (addresses or networks).
# With neither set it answers 404: it is never public by default.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Collectors other apps add to /metrics (dotted paths), as reactions are added to an apply.
METRICS_COLLECTORS = ["apps.outbound.metrics.DeliveryFreshnessCollector"]
METRICS_ALLOWED_IPS = [ipaddress.ip_network(net, strict=False) for net in env.list("METRICS_ALLOWED_IPS", default=[])]

# --- Email: the console in the demo; set EMAIL_URL (smtp+tls://user:pass@host:587) in production ---
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Control Tower <control-tower@localhost>")
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.partners.authentication.PartnerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.partners.authentication.IsPerson"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "controltower.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Control Tower API",
    "DESCRIPTION": "Order-to-cash timelines, canonical events and exception cases.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["apps.partners.authentication.IsPerson"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security (production values apply whenever DEBUG is off) ---------------------------------
# Only a proxy we run may say the request came over HTTPS: set this when one in front of us sets
# X-Forwarded-Proto (and drops the client's own); otherwise any client could claim it.
TRUST_X_FORWARDED_PROTO = env.bool("TRUST_X_FORWARDED_PROTO", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_X_FORWARDED_PROTO else None
# How many proxies of ours stand in front and append to X-Forwarded-For; 0 reads REMOTE_ADDR only.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# No inline script or style anywhere: behaviour lives in static/js, htmx runs without eval.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        # 'self' covers ws:// and wss:// to this host (CSP level 3): the live pages' websockets.
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT failures a (username, address) pair
# is refused for LOGIN_COOLOFF_MINUTES, whatever the password. Keyed on the pair, so failures
# from elsewhere cannot lock the real user out.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "controltower.auth.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
