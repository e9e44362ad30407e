"""Pipeline processes run the cyclic garbage collector less often (see controltower.collector)."""

import gc

import pytest
from celery.signals import worker_process_init

from controltower.collector import BATCH_THRESHOLD, tuned_for_batches


@pytest.fixture
def collector_state():
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_worker_process_collects_every_batch_threshold_objects_and_skips_its_start_up(collector_state):
    worker_process_init.send(sender=None)

    assert gc.get_threshold() == (BATCH_THRESHOLD, *collector_state[1:])
    assert gc.get_freeze_count() > 0


def test_a_command_tunes_the_collector_for_its_run_only(collector_state):
    with tuned_for_batches():
        assert gc.get_threshold()[0] == BATCH_THRESHOLD

    assert gc.get_threshold() == collector_state


def test_a_higher_threshold_set_by_the_process_is_kept(collector_state):
    gc.set_threshold(BATCH_THRESHOLD * 2, *collector_state[1:])
    with tuned_for_batches():
        assert gc.get_threshold()[0] == BATCH_THRESHOLD * 2
