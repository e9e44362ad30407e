"""Pytest plugin for mutation runs: every test starts with an empty cache.

mutmut forks each mutant's test run from a process that has already run the tests, and the
cache outlives a test (locally, and in Redis across runs). A webhook test sending the same signed
body again would then be refused as a replay, a failure that says nothing about the mutant.
"""

import pytest


@pytest.fixture(autouse=True)
def _empty_cache():
    from django.core.cache import cache

    cache.clear()
