"""The tenant's memory of the signed requests it accepted (`_Seen`): a signature is
refused a second time while it is remembered, and forgotten once it leaves the
window, with time given by the caller (the `now` of each request)."""

from __future__ import annotations

from tether.remote._handler import _Seen

WINDOW = 300.0  # the tolerance: a signature is remembered for twice that


def test_a_signature_is_refused_a_second_time_within_the_window() -> None:
    seen = _Seen(WINDOW)
    assert seen.admit("a", 1000.0)
    assert not seen.admit("a", 1000.0)
    assert seen.admit("b", 1001.0)
    assert not seen.admit("a", 1000.0 + 2 * WINDOW - 0.001)  # still within it
    assert not seen.admit("b", 1000.0 + 2 * WINDOW - 0.001)


def test_a_signature_is_forgotten_once_it_leaves_the_window() -> None:
    seen = _Seen(WINDOW)
    assert seen.admit("a", 1000.0)
    assert seen.admit("b", 1010.0)
    assert seen.admit("a", 1000.0 + 2 * WINDOW)  # left the window: new again
    assert not seen.admit("b", 1000.0 + 2 * WINDOW)  # not yet
    assert seen.admit("b", 1010.0 + 2 * WINDOW)
    assert not seen.admit("a", 1010.0 + 2 * WINDOW)  # remembered from its second time


def test_signatures_accepted_out_of_time_order_leave_by_their_time() -> None:
    # the wall clock can step back: the one accepted later, at an earlier time, leaves first
    seen = _Seen(WINDOW)
    assert seen.admit("late", 2000.0)
    assert seen.admit("early", 1000.0)
    later = 1000.0 + 2 * WINDOW
    assert seen.admit("early", later)
    assert not seen.admit("late", later)


def test_a_request_does_not_rebuild_the_table_of_signatures() -> None:
    # each request copied every remembered signature into a new table, so a request
    # cost more the more requests the window held; now it looks only at those leaving
    seen = _Seen(WINDOW)
    table = seen._seen
    for i in range(1000):
        assert seen.admit(f"s{i}", 1000.0 + i * 0.1)
    assert seen._seen is table and len(table) == 1000
    assert seen.admit("next", 1000.0 + 2 * WINDOW + 50.0)  # the first 501 left the window
    assert seen._seen is table and len(table) == 1000 - 501 + 1
    assert seen.admit("s0", 1000.0 + 2 * WINDOW + 50.0)
    assert not seen.admit("s999", 1000.0 + 2 * WINDOW + 50.0)
