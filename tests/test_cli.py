"""The command line: --version, --help, and `shardis up` starting and stopping cleanly."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import redis

from shardis import __version__
from shardis.cli import build_parser, parse
from tests.servers import start_shardis


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardis", *args], capture_output=True,
                          text=True, timeout=30)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_the_subcommands():
    result = run("--help")
    assert result.returncode == 0
    for word in ("up", "router", "worker"):
        assert word in result.stdout


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _workers(pid: int) -> list[int]:
    """The worker processes among ``pid``'s children (``worker`` is their subcommand)."""
    found = []
    for child in _children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        if b"worker" in argv and _alive(child):
            found.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def test_up_serves_and_stops_cleanly_on_sigterm():
    server = start_shardis(workers=2)
    children = _children(server.proc.pid)
    assert len(children) == 2  # two workers (the router runs in the supervisor's process)
    run_dirs = [d for d in os.listdir("/tmp") if d.startswith("shardis-run-")]
    client = redis.Redis(port=server.port)
    assert client.set("a", "1") and client.get("a") == b"1"
    client.close()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "orphan processes left behind"
    log = open(os.path.join(server.workdir, "shardis.log")).read()
    run_dir = log.split("ipc://")[1].split("/worker-")[0] if "ipc://" in log else None
    if run_dir:
        assert not os.path.exists(run_dir), "ipc run directory left behind"
    assert "ready" in log and "stopped" in log
    server.stop()
    del run_dirs


def test_up_refuses_a_port_in_use():
    server = start_shardis(workers=1)
    try:
        result = run("up", "--workers", "1", "--port", str(server.port))
        assert result.returncode == 1
        assert "already in use" in result.stderr
    finally:
        server.stop()


def test_a_killed_worker_is_restarted():
    server = start_shardis(workers=2)
    try:
        client = redis.Redis(port=server.port, socket_timeout=5)
        workers = _workers(server.proc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            alive = _workers(server.proc.pid)
            if len(alive) == 2 and workers[0] not in alive:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("worker was not restarted")
        # Without an AOF, commands for a worker that is down fail at once, with a clear error,
        # until it has reconnected (no hang, no silent wait).
        deadline = time.monotonic() + 15
        while True:
            try:
                client.set("probe", 1)
                break
            except redis.ResponseError as exc:
                assert re.fullmatch(r"worker 0 \(ipc://.*\) is down", str(exc)), str(exc)
                assert time.monotonic() < deadline, "the restarted worker never came back"
                time.sleep(0.05)
        for i in range(50):
            assert client.set(f"k{i}", i)
        client.close()
    finally:
        server.stop()


def test_router_and_workers_as_separate_processes_over_tcp():
    """`shardis worker` + `shardis router`: the multi-host topology, here on loopback."""
    from tests.servers import free_port, wait_for_port

    worker_ports = [free_port() for _ in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "shardis", "worker", "--listen",
                          f"tcp://127.0.0.1:{port}", "--index", str(index)])
        for index, port in enumerate(worker_ports)
    ]
    router_port = free_port()
    connect = ",".join(f"tcp://127.0.0.1:{port}" for port in worker_ports)
    procs.append(subprocess.Popen([sys.executable, "-m", "shardis", "router", "--connect",
                                   connect, "--port", str(router_port)]))
    try:
        wait_for_port(router_port, procs[-1])
        client = redis.Redis(port=router_port)
        client.mset({f"t{i}": i for i in range(100)})
        assert client.mget([f"t{i}" for i in range(100)]) == [str(i).encode() for i in range(100)]
        assert client.dbsize() == 100
        client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=10) == 0


def test_commands_in_flight_when_a_worker_dies_get_an_error_not_a_hang():
    server = start_shardis(workers=2)
    try:
        workers = _workers(server.proc.pid)
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # frozen: requests pile up in flight
        # No retries: the first answer is what the router said.
        client = redis.Redis(port=server.port, socket_timeout=10, retry=None)
        results: list[object] = []

        import threading

        def request() -> None:
            try:
                results.append(client.mset({f"m{i}": i for i in range(20)}))
            except redis.RedisError as exc:
                results.append(exc)

        thread = threading.Thread(target=request)
        thread.start()
        time.sleep(0.3)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=10)
        assert results and isinstance(results[0], redis.ResponseError)
        assert "connection lost" in str(results[0])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # restarted workers serve again
            try:
                if client.set("after", 1):
                    break
            except redis.RedisError:
                time.sleep(0.2)
        assert client.get("after") == b"1"
    finally:
        server.stop()


def test_a_restarted_worker_gets_back_subscriptions_and_blocked_commands():
    from shardis.slots import SlotMap
    from tests.resp_client import RawClient

    server = start_shardis(workers=2)
    try:
        hub = next(p for p in _workers(server.proc.pid)
                   if b"--index\x000" in open(f"/proc/{p}/cmdline", "rb").read())
        key = next(f"q{i}" for i in range(100) if SlotMap(2).worker_of(f"q{i}".encode()) == 0)
        subscriber = RawClient(server.port)
        subscriber.call("SUBSCRIBE", "news")
        blocked = RawClient(server.port)
        blocked.send("BLPOP", key, "0")
        client = redis.Redis(port=server.port, socket_timeout=5)
        deadline = time.monotonic() + 5
        while client.info("clients")["blocked_clients"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(hub, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while True:  # wait for the restarted worker to answer
            try:
                if client.rpush("probe", 1):
                    break
            except redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        time.sleep(0.3)
        assert client.rpush(key, "after-restart") == 1
        assert blocked.read_reply() == (
            b"*2\r\n$%d\r\n%s\r\n$13\r\nafter-restart\r\n" % (len(key), key.encode()))
        assert client.publish("news", "hello") == 1
        assert subscriber.read_reply() == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        subscriber.close()
        blocked.close()
        client.close()
    finally:
        server.stop()


def test_router_refuses_workers_listed_in_the_wrong_order():
    from tests.servers import free_port

    worker_ports = [free_port() for _ in range(2)]
    workers = [
        subprocess.Popen([sys.executable, "-m", "shardis", "worker", "--listen",
                          f"tcp://127.0.0.1:{port}", "--index", str(index)],
                         stderr=subprocess.DEVNULL)
        for index, port in enumerate(worker_ports)
    ]
    try:
        connect = ",".join(f"tcp://127.0.0.1:{port}" for port in reversed(worker_ports))
        result = subprocess.run([sys.executable, "-m", "shardis", "router", "--connect", connect,
                                 "--port", str(free_port())],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert "wrong order" in result.stderr or "fix the order" in result.stderr
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(timeout=10)


def _tcp_worker(port: int, index: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shardis", "worker", "--listen",
                             f"tcp://127.0.0.1:{port}", "--index", str(index)],
                            stderr=subprocess.DEVNULL)


def _until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_a_worker_that_reconnects_as_another_shard_is_refused():
    """A worker restarted with the wrong --index where shard 0 was: its slots' commands get
    Redis Cluster's CLUSTERDOWN error (no key lands on the wrong shard); once the right worker
    is back there, they are served again.  The other shard is served throughout."""
    from shardis.slots import SlotMap
    from tests.servers import free_port, wait_for_port

    slots = SlotMap(2)
    key0 = next(f"k{i}" for i in range(100) if slots.worker_of(f"k{i}".encode()) == 0)
    key1 = next(f"k{i}" for i in range(100) if slots.worker_of(f"k{i}".encode()) == 1)
    worker_ports = [free_port() for _ in range(2)]
    workers = [_tcp_worker(port, index) for index, port in enumerate(worker_ports)]
    router_port = free_port()
    connect = ",".join(f"tcp://127.0.0.1:{port}" for port in worker_ports)
    router = subprocess.Popen([sys.executable, "-m", "shardis", "router", "--connect", connect,
                               "--port", str(router_port)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(router_port, router)
        client = redis.Redis(port=router_port, socket_timeout=10)
        assert client.set(key0, "a") and client.set(key1, "b")
        workers[0].kill()
        workers[0].wait(timeout=10)
        workers[0] = _tcp_worker(worker_ports[0], 1)  # shard 1 again, at shard 0's address

        def refused() -> bool:
            try:
                client.set(key0, "wrong place")
            except redis.ResponseError as exc:
                return str(exc) == "Hash slot not served" or "CLUSTERDOWN" in str(exc)
            return False

        _until(refused)
        assert client.get(key1) == b"b"  # the other shard is untouched
        workers[0].kill()
        workers[0].wait(timeout=10)
        workers[0] = _tcp_worker(worker_ports[0], 0)
        _until(lambda: client.set(key0, "c"))
        assert client.get(key0) == b"c" and client.get(key1) == b"b"
        client.close()
    finally:
        router.terminate()
        log = router.communicate(timeout=10)[1]
        for proc in workers:
            proc.terminate()
            proc.wait(timeout=10)
    assert "is shard 1 but is listed at position 0" in log


#: One valid command line per subcommand, without --log-level.
SUBCOMMANDS = {
    "up": ["up", "--workers", "2"],
    "router": ["router", "--connect", "tcp://127.0.0.1:7000"],
    "worker": ["worker", "--listen", "tcp://127.0.0.1:7000"],
    "keygen": ["keygen", "some/name"],
}


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_log_level_goes_before_or_after_the_subcommand(name):
    parser = build_parser()
    line = SUBCOMMANDS[name]
    assert parse(parser, line).log_level == "info"
    assert parse(parser, ["--log-level", "debug", *line]).log_level == "debug"
    assert parse(parser, [*line, "--log-level", "debug"]).log_level == "debug"
    # Given twice, the later one wins, as with any repeated option.
    assert parse(parser, ["--log-level", "error", *line, "--log-level", "warning"]).log_level \
        == "warning"


def test_no_subcommand_means_up_with_the_options_given():
    args = parse(build_parser(), ["--log-level", "debug"])
    assert (args.command, args.log_level) == ("up", "debug")


def test_up_passes_a_log_level_given_after_it_to_its_processes():
    server = start_shardis(1, "--log-level", "debug")
    try:
        lines = subprocess.run(["ps", "-o", "args=", "--ppid", str(server.proc.pid)],
                               capture_output=True, text=True).stdout.splitlines()
        assert lines and all("--log-level debug" in line for line in lines), lines
    finally:
        server.stop()
