"""The namespace fault plane on real namespaces, links and TCP: cuts and loss hit the
peers' traffic only, the harness always gets through, and nothing is left behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from chaos.netns import PREFIX, NamespaceNet, remove_leftovers, tagged, unavailable_reason

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"namespace plane: {unavailable_reason()}"
)
PORT = 7000
LISTENER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(({host!r}, {port})); s.listen(64); print('ready', flush=True)\n"
    "while True: s.accept()[0].close()\n"
)
CONNECT = (
    "import socket, sys\n"
    "try: socket.create_connection(({host!r}, {port}), timeout=1.0).close()\n"
    "except OSError: sys.exit(1)\n"
)


def _reaches(prefix: list[str], host: str) -> bool:
    code = CONNECT.format(host=host, port=PORT)
    done = subprocess.run([*prefix, sys.executable, "-c", code], timeout=10, check=False)
    return done.returncode == 0


def _leftovers(tag: str) -> list[str]:
    namespaces, links = tagged(tag)
    return namespaces + links


@pytest.fixture
def net() -> Iterator[NamespaceNet]:
    plane = NamespaceNet()
    plane.create()
    try:
        yield plane
    finally:
        plane.destroy()


@pytest.fixture
def listening(net: NamespaceNet) -> Iterator[str]:
    """n1 and n2 in their namespaces, a TCP listener on n1; yields n1's address."""
    host = net.add_node("n1")
    net.add_node("n2")
    code = LISTENER.format(host=host, port=PORT)
    listener = subprocess.Popen(
        [*net.command_prefix("n1"), sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield host
    finally:
        listener.kill()
        listener.wait()


def test_a_cut_stops_the_peer_but_never_the_harness(net: NamespaceNet, listening: str) -> None:
    peer = net.command_prefix("n2")
    assert _reaches(peer, listening) and _reaches([], listening)
    net.cut("n2", ["n1"])
    assert not _reaches(peer, listening)
    assert _reaches([], listening)
    net.heal()
    assert _reaches(peer, listening)


def test_a_cut_on_one_side_breaks_tcp_both_ways(net: NamespaceNet, listening: str) -> None:
    """Only n1 has the blackhole route, yet n2 cannot connect: n1's answers are lost."""
    net.cut("n1", ["n2"])
    assert not _reaches(net.command_prefix("n2"), listening)
    assert _reaches([], listening)


def test_total_loss_drops_peer_packets_only(net: NamespaceNet, listening: str) -> None:
    if net.loss_tool is None:
        pytest.skip("iptables is not installed")
    assert net.lose("n1", 1.0)
    assert not _reaches(net.command_prefix("n2"), listening)
    assert _reaches([], listening)
    net.heal()
    assert _reaches(net.command_prefix("n2"), listening)


def test_destroy_removes_every_namespace_and_link() -> None:
    plane = NamespaceNet()
    plane.create()
    plane.add_node("n1")
    plane.add_node("n2")
    assert len(_leftovers(plane.tag)) >= 4
    plane.destroy()
    assert _leftovers(plane.tag) == []


def test_what_a_killed_harness_left_is_removed_by_the_next_run() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    name = f"{PREFIX}{gone.pid}br"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        remove_leftovers()
        assert _leftovers(name) == []
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
