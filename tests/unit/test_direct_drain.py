"""The drain-loop shortcut replaces Faust's loop, keeping the original where the upstream check finds it."""

from faust.transport.consumer import Consumer

from stream.app import compat, direct


def test_installing_the_drain_loop_keeps_faust_s_for_the_upstream_check(monkeypatch):
    monkeypatch.setattr(Consumer, "_drain_messages", Consumer._drain_messages)  # restored afterwards
    original = Consumer._drain_messages
    direct.install_direct_drain()
    assert Consumer._drain_messages is direct._drain_messages
    assert direct._drain_messages.__wrapped__ is original
    assert compat.check() is None  # still judged on the upstream loop, not on the copy
