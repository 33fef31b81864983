"""The local pool's two interrupt races, each staged at its worst moment.

1. The terminal's Ctrl-C reaches the whole process group. A worker forked in that moment,
   before its initializer could ignore SIGINT, died of a KeyboardInterrupt, and the run
   ended as "a worker process died" (exit 1) instead of interrupted (130).
2. An interrupted run SIGKILLs its workers. One killed halfway through sending its result
   left half a message in the result pipe; the pool's manager thread waited for the rest
   for ever, and so did the run (CI: "did not end within 180 s").
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from chaoslab.runner import _die_with_parent, _kill_workers, _sigint_held

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="fork, prctl and pthread_sigmask"
)

FORK = multiprocessing.get_context("fork")
#: far longer than a healthy shutdown of a one-worker pool takes
SHUTDOWN_WAIT_S = 30.0

_masks: dict[str, bool] = {}


def _recording_initializer(run_pid: int) -> None:
    _masks["blocked_at_start"] = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    _die_with_parent(run_pid)


def _signal_state() -> dict[str, Any]:
    return {
        **_masks,
        "blocked_after": signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "ignored_after": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
    }


def test_a_worker_starts_with_ctrl_c_held_until_it_ignores_it() -> None:
    pool = ProcessPoolExecutor(
        1, mp_context=FORK, initializer=_recording_initializer, initargs=(os.getpid(),)
    )
    try:
        with _sigint_held():
            # the first submit forks the worker: a Ctrl-C now would be held, not delivered
            assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            fut = pool.submit(_signal_state)
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        state = fut.result(timeout=SHUTDOWN_WAIT_S)
    finally:
        pool.shutdown(wait=True)
    assert state == {"blocked_at_start": True, "blocked_after": False, "ignored_after": True}


def test_a_ctrl_c_held_while_a_worker_starts_reaches_the_run_afterwards() -> None:
    # sent to this thread, as fork copies this thread's mask: a process-wide kill would
    # be taken by any other thread of the test session that does not block SIGINT
    held = False
    with pytest.raises(KeyboardInterrupt):
        with _sigint_held():
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            time.sleep(0.05)  # held: nothing is raised in here
            held = True
        time.sleep(1)  # delivered at once when the block ends; never reached
    assert held


def _half_a_result() -> None:
    """Inside the worker: start a 1 MiB message on the pool's result pipe, send 16 bytes
    of it and stall, as a worker does that is SIGKILLed while it sends a chunk's trials."""
    frame = sys._getframe()
    while "result_queue" not in frame.f_locals:
        assert frame.f_back is not None
        frame = frame.f_back
    fd = frame.f_locals["result_queue"]._writer.fileno()
    os.write(fd, struct.pack("!i", 1 << 20) + b"\0" * 16)
    time.sleep(3600)


def test_a_worker_killed_while_it_sends_its_result_does_not_hang_the_pool() -> None:
    pool = ProcessPoolExecutor(
        1, mp_context=FORK, initializer=_die_with_parent, initargs=(os.getpid(),)
    )
    pool.submit(_half_a_result)
    worker = next(iter(pool._processes.values()))  # as the run reaches it
    time.sleep(1.0)  # the manager thread is now in recv(), waiting for the rest
    _kill_workers(pool)
    done = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
    done.start()
    done.join(SHUTDOWN_WAIT_S)
    if done.is_alive():  # the fix is gone: end the message so no thread reads for ever
        os.write(pool._result_queue._writer.fileno(), b"\0" * ((1 << 20) - 16))
        done.join(SHUTDOWN_WAIT_S)
        pytest.fail("the pool's shutdown hung after its worker was killed")
    assert not worker.is_alive()
