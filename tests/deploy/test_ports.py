"""Ports the local stack listens on."""

from __future__ import annotations

import socket

from services.local.kafka import free_port_run, port_is_free


def test_a_run_of_free_ports_lies_below_the_outgoing_range_and_is_free():
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for count in (1, 4):
        base = free_port_run(count)
        assert 1024 <= base and base + count - 1 < low
        assert all(port_is_free(base + i) for i in range(count))


def test_a_run_skips_a_base_whose_ports_are_not_all_free(monkeypatch):
    import random

    base = free_port_run(2)
    with socket.socket() as held:  # the run's second port taken: that base will not do
        held.bind(("127.0.0.1", base + 1))
        held.listen()
        tries = iter([base, base + 50])
        monkeypatch.setattr(random.Random, "randrange", lambda self, a, b: next(tries))
        assert free_port_run(2) == base + 50
