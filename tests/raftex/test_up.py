"""`raftex up`: the local cluster behind `make run`, and its supervision of the nodes."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster.admin_client import AdminError, read_admin_token
from tests.cluster.harness import ClusterHarness

UP_WAIT_S = 60.0
# Five failed starts wait 0.5 + 1 + 2 + 4 + 8 s between them, plus each start's own time.
GIVE_UP_WAIT_S = 60.0
RESTART_BACKOFF_FIRST_S = 0.5


class Up:
    """A `raftex up` process and every line it has printed (stdout and stderr)."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        """Encrypted at rest with a key file beside `data_dir` (`kek_file`), never the user's
        own ~/.config/raftex/kek."""
        self.data_dir = data_dir
        self.kek_file = data_dir.with_name(data_dir.name + ".kek")
        if "--no-encryption" not in args:
            args = (*args, "--kek-file", str(self.kek_file))
        if "--calendar" not in args:
            # Continuous trading unless a test asks for a calendar: these tests place orders
            # at whatever time of day they run.
            args = (*args, "--calendar", "none")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "raftex.cli", "up", "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("cluster up", UP_WAIT_S)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._new.put(line)

    def wait_for(self, text: str | Callable[[str], bool], timeout_s: float = UP_WAIT_S) -> str:
        """The first line printed, since start, that holds `text` (or that `text` accepts)."""
        deadline = time.monotonic() + timeout_s
        wanted = text if callable(text) else lambda line: text in line
        while True:
            found = next((line for line in self.lines if wanted(line)), None)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self._new.empty()):
                raise AssertionError(f"raftex up never printed {text!r}: {''.join(self.lines)}")
            try:
                self.lines.append(self._new.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue

    def nodes(self) -> dict[str, dict[str, Any]]:
        rows = json.loads((self.data_dir / "cluster.json").read_text())["nodes"]
        return {row["id"]: row for row in rows}

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.wait_for("cluster stopped", 10)
        return "".join(self.lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _bind_once_freed(sock: socket.socket, host: str, port: int) -> None:
    """Binds as soon as a killed node's socket is gone (well before its restart, 0.5 s on)."""
    deadline = time.monotonic() + 0.4
    while True:
        try:
            sock.bind((host, port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _free_run(length: int) -> int:
    """The first of `length` consecutive ports on 127.0.0.1 that are free now."""
    for _ in range(200):
        base = random.randrange(21_000, 31_000)
        sockets = [socket.socket() for _ in range(length)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no run of free ports")


def test_up_starts_seeds_stops_cleanly_and_keeps_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    up = Up(data_dir)
    try:
        pids = [n["pid"] for n in up.nodes().values()]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        assert oct((data_dir / "admin.token").stat().st_mode & 0o777) == "0o600"
        harness = ClusterHarness(data_dir, attached=True)
        seeded = harness.call("n1", "GET", "/v1/admin/status")["last_seq"]
        assert seeded > 0, "demo instruments and accounts were seeded"
        placed = harness.submit(
            "n1", [8, "alice", "AAPL", 0, 5, 18_900, 0, 0, "kept-across-restarts"]
        )
        assert placed["events"][0]["type"] == "accepted"
    finally:
        out = up.stop()
    assert "cluster stopped" in out
    assert not any(_alive(p) for p in pids), "every node process ended"

    up = Up(data_dir)
    try:
        harness = ClusterHarness(data_dir, attached=True)
        harness.wait_hashes_agree()
        counts = harness.accepted_counts("n2")
        assert counts[("alice", "kept-across-restarts")] == 1
        assert read_admin_token(data_dir / "cluster.json") == harness.token
    finally:
        up.stop()


def test_up_restarts_a_killed_leader_and_leaves_down_a_node_that_cannot_start(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    http_base, raft_base = _free_run(3), _free_run(3)
    taken = socket.socket()
    taken.bind(("127.0.0.1", http_base + 1))
    taken.listen()
    try:
        up = Up(data_dir, "--http-port-base", str(http_base), "--raft-port-base", str(raft_base))
    finally:
        taken.close()
    try:
        nodes = up.nodes()
        assert nodes["n1"]["http"] == f"127.0.0.1:{http_base}"
        assert nodes["n3"]["http"] == f"127.0.0.1:{http_base + 2}"
        assert nodes["n2"]["http"] != f"127.0.0.1:{http_base + 1}", "a taken port is replaced"
        assert [nodes[n]["raft"] for n in ("n1", "n2", "n3")] == [
            f"127.0.0.1:{raft_base + i}" for i in range(3)
        ]
        up.wait_for(f"http://127.0.0.1:{http_base}")

        harness = ClusterHarness(data_dir, attached=True)
        leader = harness.wait_leader()
        old_pid = nodes[leader]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        up.wait_for(f"{leader} exited (signal SIGKILL)")
        up.wait_for(f"{leader} restarted")
        new_pid = up.nodes()[leader]["pid"]
        assert new_pid not in (None, old_pid) and _alive(new_pid)
        harness.wait_leader()
        placed = harness.submit(leader, [8, "bob", "MSFT", 1, 3, 42_100, 0, 0, "after-kill"])
        assert placed["events"][0]["type"] == "accepted"
        harness.wait_hashes_agree()

        broken = next(n for n in ("n1", "n2", "n3") if n != harness.wait_leader())
        (data_dir / f"{broken}.toml").write_text("node_id = \n")
        os.kill(up.nodes()[broken]["pid"], signal.SIGKILL)
        gave_up = up.wait_for("failed to start 5 times in a row", GIVE_UP_WAIT_S)
        assert gave_up.startswith(f"raftex up: {broken} exited (code 2)"), gave_up
        assert up.nodes()[broken]["pid"] is None
        assert up.process.poll() is None, "the rest of the cluster keeps running"
        live = next(n for n in ("n1", "n2", "n3") if n != broken)
        placed = harness.submit(live, [8, "bob", "MSFT", 1, 3, 42_100, 0, 0, "two-of-three"])
        assert placed["events"][0]["type"] == "accepted"

        # Another program takes a node's HTTP port while it is down: the node fails at bind,
        # and a port that accepts connections must not pass for the node serving.
        squatted = next(n for n in ("n1", "n2", "n3") if n not in (broken, live))
        host, port = up.nodes()[squatted]["http"].rsplit(":", 1)
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            os.kill(up.nodes()[squatted]["pid"], signal.SIGKILL)
            _bind_once_freed(squatter, host, int(port))
            squatter.listen()
            up.wait_for(
                lambda line: (
                    line.startswith(f"raftex up: {squatted} exited")
                    and "failed to start 5 times in a row" in line
                ),
                GIVE_UP_WAIT_S,
            )
            assert up.nodes()[squatted]["pid"] is None
        finally:
            squatter.close()
    finally:
        up.stop()
    assert not any(_alive(n["pid"]) for n in up.nodes().values() if n["pid"])


def test_up_leaves_down_at_once_a_node_given_the_wrong_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    up = Up(data_dir)
    try:
        up.wait_for(f"at rest       encrypted; key-encryption key {up.kek_file}")
        assert up.kek_file.read_text() != ""
        harness = ClusterHarness(data_dir, attached=True)
        follower = next(n for n in ("n1", "n2", "n3") if n != harness.wait_leader())
        subprocess.run(
            [sys.executable, "-m", "raftex.cli", "new-kek", "--out", str(tmp_path / "other")],
            check=True,
        )
        os.replace(tmp_path / "other", up.kek_file)  # the wrong key where the nodes read it
        os.kill(up.nodes()[follower]["pid"], signal.SIGKILL)
        left = up.wait_for(f"{follower} exited (code 78)", GIVE_UP_WAIT_S)
        assert "key-encryption key does not open its data" in left and "left down" in left
        time.sleep(RESTART_BACKOFF_FIRST_S * 4)  # a restart would have come by now
        after = up.lines[up.lines.index(left) + 1 :]
        assert not any(f"{follower} restarted" in line for line in after), after
        assert up.nodes()[follower]["pid"] is None
        log = (data_dir / f"{follower}.log").read_text()
        assert "wrong key-encryption key" in log and "Traceback" not in log
        live = next(n for n in ("n1", "n2", "n3") if n != follower)
        placed = harness.submit(live, [8, "bob", "MSFT", 1, 3, 42_100, 0, 0, "two-of-three"])
        assert placed["events"][0]["type"] == "accepted"
    finally:
        up.stop()


def test_up_with_no_restart_leaves_a_dead_node_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    up = Up(data_dir, "--no-restart")
    try:
        harness = ClusterHarness(data_dir, attached=True)
        follower = next(n for n in ("n1", "n2", "n3") if n != harness.wait_leader())
        os.kill(up.nodes()[follower]["pid"], signal.SIGKILL)
        up.wait_for(f"{follower} exited (signal SIGKILL)")
        assert "left down (--no-restart)" in up.wait_for(f"{follower} exited")
        time.sleep(2.0)
        assert up.nodes()[follower]["pid"] is None
        assert not any(f"{follower} restarted" in line for line in up.lines)
        live = next(n for n in ("n1", "n2", "n3") if n != follower)
        placed = harness.submit(live, [8, "carol", "NVDA", 0, 2, 13_900, 0, 0, "still-up"])
        assert placed["events"][0]["type"] == "accepted"
    finally:
        up.stop()


DEMO_SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")
DEMO_ALIVE_WAIT_S = 45.0


def _market_alive(harness: ClusterHarness, node: str) -> list[str]:
    """What is still missing for every demo symbol to look like a live market."""
    missing = []
    for symbol in DEMO_SYMBOLS:
        book = harness.call(node, "GET", f"/v1/book/{symbol}")
        if not book["bids"] or not book["asks"]:
            missing.append(f"{symbol} book one-sided")
        if not harness.call(node, "GET", f"/v1/trades/{symbol}")["trades"]:
            missing.append(f"{symbol} no trades")
        if not harness.call(node, "GET", f"/v1/candles/{symbol}")["candles"]:
            missing.append(f"{symbol} no candles")
        if harness.call(node, "GET", f"/v1/ticker/{symbol}")["last"] is None:
            missing.append(f"{symbol} no last price")
    return missing


def test_up_with_the_demo_market_has_live_books_trades_and_candles(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    up = Up(data_dir, "--demo-market", "--demo-rate", "40")
    try:
        demo_pid = int(up.wait_for("demo market").split("pid ")[1].split(",")[0])
        harness = ClusterHarness(data_dir, attached=True)
        follower = next(n for n in ("n1", "n2", "n3") if n != harness.wait_leader())
        deadline = time.monotonic() + DEMO_ALIVE_WAIT_S
        missing = _market_alive(harness, follower)
        while missing and time.monotonic() < deadline:
            time.sleep(1.0)
            missing = _market_alive(harness, follower)
        assert not missing, missing
        harness.wait_hashes_agree()
    finally:
        up.stop()
    assert not _alive(demo_pid), "the demo market stops with the cluster"
    demo_log = (data_dir / "demo-market.log").read_text()
    assert "event=started symbols=4" in demo_log and "event=stopped" in demo_log
    assert "Traceback" not in demo_log


SHORT_SESSION_S = 60
# Two sessions and the cluster's start.
SESSIONS_WAIT_S = 2 * SHORT_SESSION_S + 30.0


def test_up_with_the_demo_market_on_a_short_day_shows_the_auctions(tmp_path: Path) -> None:
    """`make run`'s calendar, cut to a minute: within two sessions every phase appears
    on /v1/instruments, the demo market's orders cross in pre-open and pre-close, and the
    opening and closing auctions trade and set an official close."""
    data_dir = tmp_path / "data"
    up = Up(
        data_dir, "--demo-market", "--demo-rate", "40",
        "--calendar", "short", "--session-s", str(SHORT_SESSION_S),
    )  # fmt: skip
    phases: set[str] = set()
    auctions: set[str] = set()
    closes = False
    try:
        harness = ClusterHarness(data_dir, attached=True)
        node = harness.wait_leader()
        deadline = time.monotonic() + SESSIONS_WAIT_S
        wanted = {"opening_auction", "closing_auction"}
        while time.monotonic() < deadline and not (wanted <= auctions and closes):
            time.sleep(0.5)
            try:
                instruments = harness.call(node, "GET", "/v1/instruments")["instruments"]
                trades = [
                    harness.call(node, "GET", f"/v1/trades/{symbol}?limit=500")["trades"]
                    for symbol in DEMO_SYMBOLS
                ]
            except AdminError as exc:
                # A node whose projection is still starting or behind says retry (503); a
                # read that timed out on a loaded machine is retried as a client would.
                assert exc.status in (0, 503), exc
                continue
            for inst in instruments:
                phases.add(inst["phase"])
                closes = closes or inst["official_close"] is not None
            auctions |= {t["auction"] for page in trades for t in page if t["auction"]}
        harness.wait_hashes_agree()
    finally:
        up.stop()
    assert wanted <= auctions, (auctions, phases)
    assert {"pre_open", "continuous", "pre_close"} <= phases, phases
    assert closes, "a closing auction set an official close"
    demo_log = (data_dir / "demo-market.log").read_text()
    assert "Traceback" not in demo_log


def test_up_refuses_port_bases_that_overlap(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "raftex.cli", "up", "--data-dir", str(data_dir),
         "--http-port-base", "27000", "--raft-port-base", "27010"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "overlap" in done.stderr
    assert not data_dir.exists(), "nothing was created"
