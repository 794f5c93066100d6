"""Stream trimming (streamops.py): the floor below which every group has acknowledged."""

from __future__ import annotations

from cli_trading.streamops import lowest_floor, parse_id


def test_the_trim_floor_is_the_oldest_entry_any_group_still_owes() -> None:
    assert lowest_floor([]) is None
    assert parse_id(b"1700-3") == (1700, 3) and parse_id("5") == (5, 0)
    # group A read up to 90, nothing pending; group B read up to 100 but 40 is still pending
    assert lowest_floor([((90, 0), None), ((100, 0), (40, 1))]) == (40, 1)
    # a group that never read anything holds everything
    assert lowest_floor([((0, 0), None), ((100, 0), None)]) == (0, 0)
