"""The watchdog a Ray worker keeps on its node (overnight.executors.node): one per worker, told each
measurement's token as it starts and ends; when the worker goes, it kills what a measurement not ended left."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from overnight.executors import node


def holder(token: str) -> subprocess.Popen[bytes]:
    """A process of a measurement: its own session (as the runner starts commands), the token in its environment."""
    env = {**os.environ, "OVERNIGHT_PROCESS_TOKEN": token}
    return subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tokens are read from /proc")
def test_one_watchdog_serves_a_workers_measurements_and_kills_only_those_not_ended() -> None:
    ended, running = holder("ended-measurement:1"), holder("running-measurement:1")
    try:
        dog = node._watch("ended-measurement", 0)
        node._release(dog, "ended-measurement")
        assert node._watch("running-measurement", 0) is dog  # no interpreter started per measurement
        assert dog is not None and dog.stdin is not None
        time.sleep(1.5)  # the watchdog has read both lines and looked at the (absent) raylet once
        assert ended.poll() is None and running.poll() is None
        dog.stdin.close()  # the Ray worker died: its end of the pipe closes
        dog.wait(timeout=60)
        running.wait(timeout=60)  # killed: it belonged to a measurement that never ended
        assert ended.poll() is None  # an ended measurement's process is not the watchdog's to kill
    finally:
        for p in (ended, running):
            p.kill()
            p.wait()
        node._dog = None
