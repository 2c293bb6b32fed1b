"""Real servers for the integration tests, started on free loopback ports.

Every server here is the real thing (Debian's ``postgresql`` and ``redis-server``),
run from a temporary directory and stopped afterwards. A missing binary is an error,
never a skip: the suite must fail loudly when a server it needs cannot be had.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """A server the tests need could not be found or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not become ready within {timeout:.0f}s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _find_binary(name: str, extra_globs: list[str]) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(glob.glob(pattern), reverse=True)
        if matches:
            return matches[0]
    raise ServerUnavailable(
        f"{name!r} not found on PATH or in {extra_globs}; .ci/run installs it "
        "(apt-get install postgresql redis-server)"
    )


class PostgresServer:
    """A throw-away PostgreSQL cluster: initdb, pg_ctl start on a free port, stop.

    ``kill()`` and ``restart()`` take it down and up again on the same port and data
    directory, for outage tests. By default commits are not waited for
    (``synchronous_commit=off``: fast, but a crash may lose the last acknowledged
    ones); ``durable_commits=True`` keeps every acknowledged commit across ``kill()``.
    """

    def __init__(self, *, durable_commits: bool = False) -> None:
        self._bindir = os.path.dirname(
            os.path.realpath(_find_binary("initdb", ["/usr/lib/postgresql/*/bin/initdb"]))
        )
        self.port = free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="sagaflow-pg-"))
        self._data = self._tmp / "data"
        self._as_root = os.geteuid() == 0
        self._durable = durable_commits
        self.running = False

    @property
    def dsn_base(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_root:
            # PostgreSQL refuses to run as root; Debian's package makes this user.
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ServerUnavailable(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}"
            )

    def start(self) -> None:
        """Create the cluster (the first time) and start it; return when it is ready."""
        if not self._data.exists():
            self._initdb()
        # fsync=off is safe against kill(): the OS keeps what the server wrote.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self._tmp} -c fsync=off "
            f"-c synchronous_commit={'on' if self._durable else 'off'} "
            "-c full_page_writes=off -c max_connections=200"
        )
        self.running = True  # from here on, stop() must take it down
        self._run(
            f"{self._bindir}/pg_ctl",
            "-D",
            str(self._data),
            "-l",
            str(self._tmp / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        wait_until(lambda: port_open(self.port), 30, "PostgreSQL")

    def _initdb(self) -> None:
        if self._as_root:
            shutil.chown(self._tmp, user="postgres")
        self._run(
            f"{self._bindir}/initdb",
            "-D",
            str(self._data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def kill(self) -> None:
        """Crash the server as ``pg_ctl stop -m immediate`` does: every backend quits at
        once, no checkpoint, crash recovery on the next start. (A SIGKILL of the
        postmaster alone would leave its backends running and block the restart.)"""
        self._pg_ctl_stop("immediate")

    def shutdown(self) -> None:
        """Stop cleanly (``pg_ctl stop -m fast``: clients are told "terminating connection
        due to administrator command"), keeping the data for ``start()``."""
        self._pg_ctl_stop("fast")

    def restart(self, *, kill: bool = False) -> None:
        """``shutdown()`` or ``kill()``, then start again on the same port and data."""
        (self.kill if kill else self.shutdown)()
        self.start()

    def _pg_ctl_stop(self, mode: str) -> None:
        self._run(f"{self._bindir}/pg_ctl", "-D", str(self._data), "-m", mode, "-w", "stop")
        self.running = False

    def create_database(self, name: str) -> str:
        self._run(
            f"{self._bindir}/psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-c",
            f'CREATE DATABASE "{name}"',
        )
        return f"{self.dsn_base}/{name}"

    def stop(self) -> None:
        """Stop the server (if it runs) and delete the cluster."""
        try:
            if self.running:
                self.kill()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        """``with PostgresServer() as server``: started, then stopped and deleted."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisServer:
    """A real ``redis-server`` on a free loopback port, with kill -9 and restart."""

    def __init__(self, *, appendonly: bool = False, port: int | None = None) -> None:
        self._binary = _find_binary("redis-server", ["/usr/bin/redis-server"])
        self.port = port or free_port()
        self.appendonly = appendonly
        self.dir = Path(tempfile.mkdtemp(prefix="sagaflow-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._ready, 30, "redis-server")

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
            raise ServerUnavailable(f"redis-server exited with {self._proc.returncode}: {log}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no final save."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or SIGKILL) and start again on the same port and directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
