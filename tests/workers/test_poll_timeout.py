"""The worker loop's poll timeout: never a wait librdkafka would take as no wait at all."""

from __future__ import annotations

import pytest

from workers.worker import BUSY_POLL_MIN_S, poll_timeout


def test_a_fast_model_waits_a_whole_millisecond() -> None:
    # A quarter of an echo batch's run time is far under a millisecond; the floor holds.
    assert BUSY_POLL_MIN_S >= 0.001
    assert poll_timeout(BUSY_POLL_MIN_S, None) == 0.001


@pytest.mark.parametrize(
    ("wait_s", "due_in_s", "expected"),
    [
        (0.05, None, 0.05),  # idle: the configured wait
        (0.005, None, 0.005),
        (0.002, None, 0.002),  # whole milliseconds stay as they are
        (0.05, 0.0042, 0.005),  # cut to the transaction's due time, rounded up
        (0.005, 0.0003, 0.001),  # due within a millisecond: one millisecond, not a spin
        (0.005, 0.0, 0.0),  # due now: poll without waiting, then commit
        (0.005, -0.002, 0.0),  # overdue
    ],
)
def test_cut_to_the_due_time_in_whole_milliseconds(
    wait_s: float, due_in_s: float | None, expected: float
) -> None:
    assert poll_timeout(wait_s, due_in_s) == pytest.approx(expected, abs=1e-12)


def test_never_a_fraction_of_a_millisecond() -> None:
    for micros in range(1, 6000, 37):
        timeout = poll_timeout(micros / 1e6, None)
        millis = round(timeout * 1000)
        assert millis >= 1, micros
        assert timeout == pytest.approx(millis / 1000, abs=1e-12), micros
        assert timeout >= micros / 1e6 - 1e-12, micros  # rounded up, never down
