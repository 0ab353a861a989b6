"""The restart decisions of ``run --workers`` (``RestartPolicy``), driven by times alone, and
the sockets the workers share. The processes themselves: tests/test_cli_workers.py."""

from __future__ import annotations

import errno
import signal
import socket

import pytest

from tiny_listener.workers import GiveUp, Restart, RestartPolicy, bind_socket, describe_exit, inherited_socket


def crash(policy: RestartPolicy, worker: int, at: float, after: float = 1.0) -> Restart | GiveUp:
    """Worker ``worker`` starts at ``at`` and exits ``after`` seconds later."""
    policy.started(worker, at)
    return policy.exited(worker, at + after)


def test_a_worker_that_keeps_crashing_is_restarted_with_a_doubling_delay_up_to_the_maximum() -> None:
    policy = RestartPolicy(2, first_delay=0.5, max_delay=4.0, give_up_after=10)
    policy.started(2, 0.0)  # worker 2 runs all along: no reason to give up
    delays = []
    now = 0.0
    for _ in range(6):
        decision = crash(policy, 1, now)
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
        now += 1.0 + decision.delay
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert decision.failures == 6


def test_a_healthy_run_starts_the_count_of_failures_again() -> None:
    policy = RestartPolicy(1, first_delay=0.5, healthy_after=10.0, give_up_after=3)
    assert crash(policy, 1, 0.0) == Restart(0.5, 1)
    assert crash(policy, 1, 2.0) == Restart(1.0, 2)
    # This run lasted healthy_after: the crash that ends it is the first of a new series.
    assert crash(policy, 1, 5.0, after=10.0) == Restart(0.5, 1)


def test_gives_up_when_every_worker_keeps_failing() -> None:
    policy = RestartPolicy(2, give_up_after=2)
    assert isinstance(crash(policy, 1, 0.0), Restart)
    assert isinstance(crash(policy, 1, 2.0), Restart)  # worker 2 has not failed yet
    assert isinstance(crash(policy, 2, 0.0), Restart)
    assert crash(policy, 2, 3.0) == GiveUp(2)


def test_does_not_give_up_while_a_worker_runs_healthily() -> None:
    policy = RestartPolicy(2, healthy_after=10.0, give_up_after=2)
    for at in (0.0, 2.0):
        crash(policy, 2, at)  # worker 2 failed twice, then started again and stays up
    policy.started(2, 5.0)
    crash(policy, 1, 6.0)
    # Worker 1 has failed twice too, but worker 2 has now run 10 s: it serves, keep trying.
    assert isinstance(crash(policy, 1, 14.0), Restart)
    # Had worker 2 just restarted, both would be failing.
    assert isinstance(crash(RestartPolicy(1, give_up_after=1), 1, 0.0), GiveUp)


def test_a_single_worker_gives_up_after_its_own_failures() -> None:
    policy = RestartPolicy(1, first_delay=0.5, give_up_after=5)
    decisions = [crash(policy, 1, float(n)) for n in range(5)]
    assert decisions == [Restart(0.5, 1), Restart(1.0, 2), Restart(2.0, 3), Restart(4.0, 4), GiveUp(5)]


def test_start_and_exit_must_alternate() -> None:
    policy = RestartPolicy(1)
    with pytest.raises(ValueError, match="worker 1 is not running"):
        policy.exited(1, 0.0)
    policy.started(1, 0.0)
    with pytest.raises(ValueError, match="worker 1 is already running"):
        policy.started(1, 1.0)
    with pytest.raises(ValueError, match="at least 1"):
        RestartPolicy(0)


def test_exit_statuses_are_described_as_a_shell_would() -> None:
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


def test_bind_socket_listens_and_names_the_address_it_cannot_bind() -> None:
    with bind_socket("127.0.0.1", 0, backlog=8) as sock:
        host, port = sock.getsockname()
        with socket.create_connection((host, port), timeout=5):
            pass  # accepted into the backlog: it listens
        with pytest.raises(OSError, match=rf"\('127.0.0.1', {port}\): address already in use") as caught:
            bind_socket("127.0.0.1", port, backlog=8)
    assert caught.value.errno == errno.EADDRINUSE


def test_inherited_socket_takes_a_tcp_socket_and_refuses_anything_else() -> None:
    with bind_socket("127.0.0.1", 0, backlog=8) as bound:
        sock = inherited_socket(bound.fileno())
        assert sock.getsockname() == bound.getsockname()
        sock.detach()  # the same descriptor: closed once, by bound
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right, pytest.raises(ValueError, match=f"file descriptor {left.fileno()} is not a TCP socket"):
        inherited_socket(left.fileno())
