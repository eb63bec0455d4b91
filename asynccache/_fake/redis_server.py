"""Private redis-servers for tests: own loopback ports, no persistence, stopped by PID.

Tests never touch a system Redis (6379): each server is started here on a free port in a temp
dir, with RDB and AOF off, and killed by the PID we started, nothing broader. ``pause`` and
``resume`` send SIGSTOP / SIGCONT to simulate a stalled server. :class:`RedisClusterServer` joins
three such servers into a Redis Cluster (``redis-cli --cluster create``), because cluster code
paths (cross-slot MGET, pipelines) differ from the single-node ones and only a real cluster
shows it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisClusterServer", "RedisServer"]

_START_ATTEMPTS = 3
_READY_TIMEOUT = 5.0


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(*, with_bus_port: bool = False) -> int:
    """A free loopback port (and, for a cluster node, a free port + 10000 for its bus)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not with_bus_port:
            return port
        if port + 10000 < 65536 and _port_is_free(port + 10000):
            return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Start with :meth:`start` (or ``with RedisServer() as server``); read ``.url``."""

    def __init__(self, *, cluster: bool = False) -> None:
        self.port = 0
        self._cluster = cluster
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("RedisServer is not running; call start() first")
        return self._proc.pid

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH; the tests need a real one "
                "(`make` installs it, or: apt-get install redis-server)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="asynccache-redis-")
        log = Path(self._dir.name, "redis.log")
        for _ in range(_START_ATTEMPTS):  # the free port may be taken between probe and bind
            self.port = _free_port(with_bus_port=self._cluster)
            cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            self._proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self._dir.name,
                 "--logfile", str(log), "--daemonize", "no",
                 *(cluster_args if self._cluster else [])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_ready():
                return self
            self._kill()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        self._cleanup_dir()
        raise RuntimeError(f"redis-server did not answer PING; its log ends with:\n{tail}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if _ping(self.port):
                return True
            time.sleep(0.01)
        return False

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def stop(self) -> None:
        if self._proc is not None:
            if self._paused:
                self.resume()
            self._kill()
        self._cleanup_dir()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # by its own PID, nothing broader
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _cleanup_dir(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisClusterServer:
    """Three cluster-enabled :class:`RedisServer` nodes (masters, no replicas) joined as one."""

    def __init__(self, nodes: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(nodes)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisClusterServer:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH; it ships with redis-server (`make`)")
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            created = subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-yes"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}")
            self._wait_ok(cli)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, cli: str) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        pending = list(self.nodes)
        while pending:
            info = subprocess.run(
                [cli, "-h", "127.0.0.1", "-p", str(pending[0].port), "cluster", "info"],
                capture_output=True, text=True, timeout=5, check=False,
            )  # fmt: skip
            if "cluster_state:ok" in info.stdout:
                pending.pop(0)
            elif time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ready:\n{info.stdout}")
            else:
                time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
