"""Suite-wide guards: no connection leaves this machine's loopback."""
from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address):
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            if host == "localhost":
                return
        raise AssertionError(f"test tried to connect to {address!r}: only loopback is allowed")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    def connect(sock, address):
        _check(address)
        return _real_connect(sock, address)

    def connect_ex(sock, address):
        _check(address)
        return _real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
