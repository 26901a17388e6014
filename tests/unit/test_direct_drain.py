"""The drain-loop shortcut is installed only on the Faust whose loop it copies."""

import faust
from faust.transport.consumer import Consumer

from stream.app import direct


def test_installed_on_faust_0_15_and_left_alone_on_another(monkeypatch):
    monkeypatch.setattr(Consumer, "_drain_messages", Consumer._drain_messages)  # restored afterwards
    original = Consumer._drain_messages
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    assert direct.install_direct_drain() is False
    assert Consumer._drain_messages is original
    monkeypatch.setattr(faust, "__version__", "0.15.3")
    assert direct.install_direct_drain() is True
    assert Consumer._drain_messages is direct._drain_messages
