"""The pool's connection check reads a socket's state without a round trip, at any fd number."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from orderrelay.store.db import _readable


def test_a_socket_is_readable_once_its_peer_wrote_or_hung_up():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not _readable(ours.fileno())
        theirs.sendall(b"E")  # the server's last words
        assert _readable(ours.fileno())
    quiet, closing = socket.socketpair()
    with quiet:
        closing.close()  # end of stream
        assert _readable(quiet.fileno())


def test_fd_numbers_above_select_s_limit_work():
    high = 1500
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= high:
        pytest.skip("this process may not open fd 1500")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        os.dup2(ours.fileno(), high)
        try:
            assert not _readable(high)
            theirs.sendall(b"x")
            assert _readable(high)
        finally:
            os.close(high)
