"""ReadProgress asks the log's ends on a connection of its own (services/following.py): on the follow loop's,
the question waited behind its long-poll fetch, and every "unknown" answer (an incident, a drill run, a token
looked up to the log's end first) took up to fetch.max.wait, 500 ms, measured on the local Kafka."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

import services.following as following

TP = TopicPartition("yingji.t", 0)


class Follower:
    """The follow loop's consumer: asked for the ends, it fails the test."""

    async def end_offsets(self, tps):
        raise AssertionError("the ends were asked on the follow loop's connection")


class Probe:
    made: list["Probe"] = []

    def __init__(self, *, bootstrap_servers: str, enable_auto_commit: bool):
        self.bootstrap, self.started, self.stopped, self.fail = bootstrap_servers, False, False, False
        Probe.made.append(self)

    async def start(self):
        self.started = True

    async def stop(self):
        self.stopped = True

    async def end_offsets(self, tps):
        if self.fail:
            raise ConnectionError("broker gone")
        return {tp: 3 for tp in tps}


@pytest.fixture
def probes(monkeypatch):
    Probe.made = []
    monkeypatch.setattr(following, "AIOKafkaConsumer", Probe)
    return Probe.made


def test_the_ends_are_asked_on_a_connection_of_their_own_and_it_is_kept(probes):
    async def run():
        progress = following.ReadProgress()
        progress.restart(Follower(), [TP], "127.0.0.1:1")
        progress.advance(TP, 3)  # offsets 0..2 read
        assert await progress.read_to_end(timeout=1)
        assert await progress.read_to_end(timeout=1)
        assert len(probes) == 1 and probes[0].bootstrap == "127.0.0.1:1" and probes[0].started
        await progress.stop_probe()
        assert probes[0].stopped and progress._probe is None

    asyncio.run(run())


def test_a_probe_that_fails_is_dropped_and_made_again(probes):
    async def run():
        progress = following.ReadProgress()
        progress.restart(Follower(), [TP], "127.0.0.1:1")
        progress.advance(TP, 3)
        assert await progress.read_to_end(timeout=1)
        probes[0].fail = True
        assert not await progress.read_to_end(timeout=1)  # no answer: the caller answers from what it has
        assert probes[0].stopped
        assert await progress.read_to_end(timeout=1)
        assert len(probes) == 2

    asyncio.run(run())


def test_without_a_bootstrap_the_follow_loops_consumer_answers(probes):
    class Answers(Follower):
        async def end_offsets(self, tps):
            return {tp: 1 for tp in tps}

    async def run():
        progress = following.ReadProgress()
        progress.restart(Answers(), [TP])
        progress.advance(TP, 1)
        assert await progress.read_to_end(timeout=1)
        assert probes == []

    asyncio.run(run())


def test_a_probe_made_while_the_follow_loop_stops_is_closed_not_kept(probes, monkeypatch):
    """The follow loop's stop_probe() found nothing while the probe was still connecting: it is closed then."""
    async def run():
        progress = following.ReadProgress()
        progress.restart(Follower(), [TP], "127.0.0.1:1")

        async def slow_start(self):
            progress.consumer = None  # the follow loop ends meanwhile (its finally: stop_probe finds none)
            await progress.stop_probe()
            self.started = True

        monkeypatch.setattr(Probe, "start", slow_start)
        assert not await progress.read_to_end(timeout=1)
        assert probes[0].stopped and progress._probe is None

    asyncio.run(run())
