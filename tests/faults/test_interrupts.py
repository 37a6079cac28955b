"""Ctrl-C of dcbulk's command: :func:`dcbulk.interrupts.stopping`, the first signal stops,
further ones change nothing.
"""
from __future__ import annotations

import contextlib
import signal

import pytest

from dcbulk import interrupts
from dcbulk.interrupts import Terminated, stopping


def _handlers() -> list:
    return [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]


def test_only_the_first_signal_stops(monkeypatch):
    before, taken = _handlers(), []
    with stopping():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:  # the stop: further signals, also nested blocks, ignored
            taken.append("SIGINT")
            signal.raise_signal(signal.SIGINT)
            with stopping():
                signal.raise_signal(signal.SIGTERM)
    assert taken == ["SIGINT"] and _handlers() == before
    with pytest.raises(Terminated), stopping():
        signal.raise_signal(signal.SIGTERM)
    assert _handlers() == before
    monkeypatch.setattr(interrupts, "FORCE_AFTER", 0.0)  # a stop that hangs: broken off
    with pytest.raises(KeyboardInterrupt), stopping():
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    try:  # the entry point's: once a signal was taken, ignored to the process's end
        with contextlib.suppress(KeyboardInterrupt), stopping(keep=True):
            signal.raise_signal(signal.SIGINT)
        assert _handlers() == [signal.SIG_IGN, signal.SIG_IGN]
    finally:
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), before):
            signal.signal(sig, handler)
