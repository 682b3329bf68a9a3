"""The automatic schedule under a fixed clock and seed: the specification's example, the spread of the random
offset, UTC, manual mode and retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from upmirror.options import ScheduleOptions
from upmirror.schedule import Schedule


def schedule(**overrides: object) -> Schedule:
    options = ScheduleOptions(automatic=True, **overrides)  # type: ignore[arg-type]
    return Schedule(options, seed="server-1")


def walk(s: Schedule, start: datetime, count: int) -> list[datetime]:
    times, now = [], start
    for _ in range(count):
        due = s.next_sync(now)
        assert due is not None
        times.append(due)
        now = due
    return times


def test_four_a_day_from_three_oclock_is_the_specification_example() -> None:
    s = schedule(first_sync="03:00", per_day=4, max_random_offset_minutes=0)
    start = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert [t.strftime("%H:%M") for t in walk(s, start, 5)] == ["03:00", "09:00", "15:00", "21:00", "03:00"]
    assert walk(s, start, 5)[-1].date() == datetime(2026, 11, 24).date()


def test_slots_wrap_around_midnight() -> None:
    s = schedule(first_sync="22:30", per_day=3, max_random_offset_minutes=0)
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert [t.strftime("%d %H:%M") for t in walk(s, start, 3)] == ["01 14:30", "01 22:30", "02 06:30"]


def test_offsets_stay_within_the_maximum_and_spread_the_times() -> None:
    s = schedule(first_sync="03:00", per_day=24, max_random_offset_minutes=30)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    times = walk(s, start, 24 * 14)
    offsets = [(t - t.replace(minute=0, second=0)) for t in times]
    assert all(timedelta(0) <= o <= timedelta(minutes=30) for o in offsets)
    minutes = {o.seconds // 60 for o in offsets}
    assert len(minutes) > 15, "offsets are spread over the window, not a constant"
    # Every hourly slot fires exactly once over the two weeks.
    assert len({t.replace(minute=0, second=0) for t in times}) == 24 * 14


def test_the_offset_is_stable_for_a_server_and_differs_between_servers() -> None:
    slot = datetime(2026, 5, 5, 3, 0, tzinfo=UTC)
    one = schedule(max_random_offset_minutes=30)
    assert one.offset_of(slot) == Schedule(one.options, seed="server-1").offset_of(slot)
    others = {Schedule(one.options, seed=f"server-{n}").offset_of(slot) for n in range(50)}
    assert len(others) > 30


def test_times_are_utc_whatever_the_callers_zone() -> None:
    s = schedule(first_sync="03:00", per_day=1, max_random_offset_minutes=0)
    tokyo = datetime(2026, 6, 1, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    due = s.next_sync(tokyo)
    assert due == datetime(2026, 6, 2, 3, 0, tzinfo=UTC)
    assert due is not None
    assert due.tzinfo == UTC


def test_an_offset_never_reaches_the_next_slot() -> None:
    s = schedule(per_day=24, max_random_offset_minutes=720)
    assert s.max_offset == timedelta(minutes=59)


def test_manual_mode_has_no_next_sync() -> None:
    s = Schedule(ScheduleOptions(automatic=False), seed="x")
    assert s.next_sync(datetime(2026, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(("retries", "interval"), [(2, 15.0), (0, 15.0), (3, 5.0)])
def test_unreachable_upstream_retries(retries: int, interval: float) -> None:
    s = schedule(retries=retries, retry_interval_minutes=interval)
    failed = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    assert s.retry_times(failed) == [failed + timedelta(minutes=interval * (n + 1)) for n in range(retries)]
