import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, settings

# Property tests: quick locally, at least 200 examples in CI (HYPOTHESIS_PROFILE=ci).
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True, scope="session")
def _redis_of_this_test_process() -> Iterator[None]:
    """Test processes running side by side (``pytest -n``) each get a Redis database of their own:
    one's ``cache.clear()``, lockouts or websocket groups never reach another's."""
    from django.conf import settings as django_settings
    from django.test import override_settings

    process = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not (process and django_settings.REDIS_URL):
        yield
        return
    own = urlsplit(django_settings.REDIS_URL)._replace(path=f"/{10 + int(process.removeprefix('gw'))}").geturl()
    cache = {**django_settings.CACHES["default"], "LOCATION": own}
    layer = {**django_settings.CHANNEL_LAYERS["default"], "CONFIG": {"hosts": [own]}}
    with override_settings(CACHES={"default": cache}, CHANNEL_LAYERS={"default": layer}):
        yield


@pytest.fixture(autouse=True)
def _root_logging_left_as_found() -> Iterator[None]:
    """A test that sets logging up again (``django.setup()``, ``execute_from_command_line``) binds
    the root handler to its own captured stderr, closed once it ends: every later log line of the
    process would print a logging traceback. Put the handlers back and name the test."""
    import logging

    def ours() -> list[tuple[logging.Handler, object]]:
        # pytest's own capturing handlers come and go with each phase of a test.
        return [
            (handler, getattr(handler, "stream", None))
            for handler in logging.root.handlers
            if not type(handler).__module__.startswith("_pytest")
        ]

    before = ours()
    yield
    if ours() != before:
        kept = [handler for handler in logging.root.handlers if type(handler).__module__.startswith("_pytest")]
        logging.root.handlers = [handler for handler, _ in before] + kept
        for handler, stream in before:
            if stream is not None:
                handler.stream = stream
        pytest.fail("this test changed the root log handlers (set Django or logging up again); it must not")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Signing in is part of many tests; a full-strength hash would dominate their time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium, driven by Playwright."""
    from django.db import connections
    from playwright.sync_api import sync_playwright

    from tests.support import CHROMIUM, CHROMIUM_ARGS

    # Playwright's sync API runs an event loop in this thread; the ORM calls around it are plain
    # synchronous calls, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
        # While Playwright's event loop runs, Django keeps this thread's database connections apart
        # from its usual ones (asgiref's Local); close them here, or they outlive the test and keep
        # the test database from being dropped at the end of the run.
        connections.close_all()


@pytest.fixture(autouse=True)
def guarded_connections(monkeypatch) -> list[str]:
    """The addresses the network guard connected to during the test, which never leaves this
    machine: names other than ``localhost`` do not resolve (a test that needs one patches
    ``apps.partners.network.resolve``) and a connection to anything but loopback is refused."""
    import ipaddress
    import socket

    import httpcore

    from apps.partners import network

    real_resolve, real_connect, connected = network.resolve, httpcore.SyncBackend.connect_tcp, []

    def resolve(host: str, port: int) -> list:
        if host != "localhost":
            try:
                socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
            except socket.gaierror:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real_resolve(host, port)

    def connect_tcp(backend, host: str, port: int, *args, **kwargs):
        connected.append(host)
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise httpcore.ConnectError(f"[tests] {host} is not on this machine")
        return real_connect(backend, host, port, *args, **kwargs)

    monkeypatch.setattr(network, "resolve", resolve)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    return connected


@pytest.fixture
def trust_loopback(settings) -> None:
    """Let the network guard call servers a test starts on 127.0.0.1, over plain http."""
    settings.NETWORK_TRUSTED_TARGETS = ["http://127.0.0.1"]


@pytest.fixture
def receiver(trust_loopback) -> Iterator:
    """A subscriber's endpoint on loopback (see tests/receiver.py), trusted by the network guard."""
    from tests.receiver import start_receiver

    endpoint, server = start_receiver()
    yield endpoint
    server.shutdown()
    server.server_close()
