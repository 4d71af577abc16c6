"""The root fault plane: every node in a network namespace of its own, so faults cut real TCP.

Layout: a bridge in a namespace of its own; one veth pair per node from the
node's namespace to the bridge; one veth pair from the harness's namespace to
the bridge. Partitions are blackhole routes inside the nodes' namespaces, for
the peers' addresses only, and packet loss is an iptables `statistic` rule
matching the peers' addresses only: the harness (HTTP control traffic and the
clients) reaches every node whatever the partition, as Jepsen's control node
does. The subnet is private to the bridge: nothing outside this machine can
reach it, and nothing in it reaches out.

Names carry the harness's pid, so runs side by side do not meet, and `create()`
first removes what a killed harness of an earlier run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

PREFIX = "rxc"
SUBNET_BASE = ipaddress.ip_network("10.213.0.0/16")
HOST_OCTET = 1
FIRST_NODE_OCTET = 11
COMMAND_TIMEOUT_S = 10.0


class NetnsUnavailable(RuntimeError):
    """This machine cannot build the namespace plane (not root, or a tool is missing)."""


def unavailable_reason() -> str | None:
    """Why the namespace plane cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    if not Path("/var/run/netns").exists() and not os.access("/var/run", os.W_OK):
        return "/var/run/netns cannot be created"
    return None


def _run(*args: str) -> str:
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NamespaceNet:
    """The namespaces, links, routes and rules of one chaos run; `destroy()` removes them."""

    def __init__(self) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.nodes: dict[str, int] = {}  # node id -> last octet of its address
        self.cut_peers: dict[str, set[str]] = {}
        self.lossy: set[str] = set()
        self.loss_tool = shutil.which("iptables")

    # ------------------------------------------------------------ lifetime

    def create(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        remove_leftovers()
        self.subnet = self._free_subnet()
        bridge_ns = self._bridge_ns()
        _run("ip", "netns", "add", bridge_ns)
        _run("ip", "-n", bridge_ns, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", bridge_ns, "link", "set", "br0", "up")
        host_if, host_peer = f"{self.tag}h", f"{self.tag}hb"
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", host_peer)
        self._attach(host_peer)
        _run("ip", "addr", "add", f"{self._address(HOST_OCTET)}/24", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")

    def destroy(self) -> None:
        """Removes every namespace and link of this run; safe to call twice."""
        for node_id in list(self.nodes):
            self.remove_node(node_id)
        _delete_namespace(self._bridge_ns())
        _delete_link(f"{self.tag}h")

    # ------------------------------------------------------------ nodes

    def add_node(self, node_id: str) -> str:
        """A namespace for the node, linked to the bridge; returns the node's address."""
        octet = FIRST_NODE_OCTET + len(self.nodes)
        while octet in self.nodes.values():
            octet += 1
        ns = self.namespace(node_id)
        inner, outer = f"{self.tag}{octet}e", f"{self.tag}{octet}b"
        _run("ip", "netns", "add", ns)
        self.nodes[node_id] = octet
        _run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        _run("ip", "link", "set", inner, "netns", ns)
        self._attach(outer)
        _run("ip", "-n", ns, "link", "set", inner, "name", "eth0")
        _run("ip", "-n", ns, "addr", "add", f"{self._address(octet)}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        return self.address(node_id)

    def remove_node(self, node_id: str) -> None:
        """Deleting the namespace deletes its veth pair with it."""
        if self.nodes.pop(node_id, None) is not None:
            _delete_namespace(self.namespace(node_id))
        self.cut_peers.pop(node_id, None)
        self.lossy.discard(node_id)

    def namespace(self, node_id: str) -> str:
        return f"{self.tag}{node_id}"

    def address(self, node_id: str) -> str:
        return self._address(self.nodes[node_id])

    def command_prefix(self, node_id: str) -> list[str]:
        """What a node's command line starts with: `ip netns exec` execs, so the pid is
        the node's own and kill -9 reaches it."""
        return ["ip", "netns", "exec", self.namespace(node_id)]

    # ------------------------------------------------------------ faults

    def cut(self, node_id: str, peers: list[str]) -> None:
        """The node can no longer reach `peers` (replies to them are lost too, so TCP
        in both directions breaks)."""
        self.restore(node_id)
        ns = self.namespace(node_id)
        for peer in peers:
            _run("ip", "-n", ns, "route", "add", "blackhole", self.address(peer))
        self.cut_peers[node_id] = set(peers)

    def restore(self, node_id: str) -> None:
        ns = self.namespace(node_id)
        for peer in self.cut_peers.pop(node_id, set()):
            if peer in self.nodes:
                _run("ip", "-n", ns, "route", "del", "blackhole", self.address(peer))

    def lose(self, node_id: str, probability: float) -> bool:
        """Drops that fraction of the packets between the node and its peers, both ways;
        False if iptables is missing here (the caller falls back to the node's hooks)."""
        if self.loss_tool is None:
            return False
        self.unlose(node_id)
        iptables = self._iptables(node_id)
        chance = f"{probability:.4f}"
        for peer in self.nodes:
            if peer == node_id:
                continue
            address = self.address(peer)
            for chain, side in (("INPUT", "-s"), ("OUTPUT", "-d")):
                rule = ["-m", "statistic", "--mode", "random", "--probability", chance]
                _run(*iptables, "-A", chain, side, address, *rule, "-j", "DROP")
        self.lossy.add(node_id)
        return True

    def unlose(self, node_id: str) -> None:
        if node_id in self.lossy and self.loss_tool is not None:
            iptables = self._iptables(node_id)
            _run(*iptables, "-F", "INPUT")
            _run(*iptables, "-F", "OUTPUT")
        self.lossy.discard(node_id)

    def heal(self) -> None:
        for node_id in list(self.nodes):
            self.restore(node_id)
            self.unlose(node_id)

    # ------------------------------------------------------------ helpers

    def _iptables(self, node_id: str) -> list[str]:
        assert self.loss_tool is not None
        return [*self.command_prefix(node_id), self.loss_tool]

    def _bridge_ns(self) -> str:
        return f"{self.tag}br"

    def _attach(self, outer: str) -> None:
        bridge_ns = self._bridge_ns()
        _run("ip", "link", "set", outer, "netns", bridge_ns)
        _run("ip", "-n", bridge_ns, "link", "set", outer, "master", "br0", "up")

    def _address(self, octet: int) -> str:
        assert self.subnet is not None, "create() first"
        return str(self.subnet.network_address + octet)

    def _free_subnet(self) -> ipaddress.IPv4Network:
        """A /24 of 10.213.0.0/16 that no interface of this namespace uses yet."""
        taken = _run("ip", "-o", "-4", "addr", "show")
        subnets = list(SUBNET_BASE.subnets(new_prefix=24))
        start = os.getpid() % len(subnets)
        for subnet in subnets[start:] + subnets[:start]:
            if f" {subnet.network_address + HOST_OCTET}/" not in taken:
                return subnet
        raise NetnsUnavailable(f"no free /24 left in {SUBNET_BASE}")


def _delete_namespace(name: str) -> None:
    with contextlib.suppress(NetnsUnavailable, subprocess.TimeoutExpired):
        _run("ip", "netns", "del", name)


def _delete_link(name: str) -> None:
    with contextlib.suppress(NetnsUnavailable, subprocess.TimeoutExpired):
        _run("ip", "link", "del", name)


def tagged(tag: str) -> tuple[list[str], list[str]]:
    """(namespaces, links of this namespace) whose names start with `tag`."""
    namespaces = _run("ip", "netns", "list").split()
    links = re.findall(r"^\d+: ([^:@\s]+)", _run("ip", "-o", "link"), re.MULTILINE)
    return (
        [n for n in namespaces if n.startswith(tag)],
        [n for n in links if n.startswith(tag)],
    )


def remove_leftovers() -> None:
    """Namespaces and host links of runs whose harness is gone (killed, say)."""
    pattern = re.compile(rf"^{PREFIX}(\d+)")

    def gone(name: str) -> bool:
        found = pattern.match(name)
        return found is not None and not _pid_alive(int(found.group(1)))

    namespaces, links = tagged(PREFIX)
    for name in filter(gone, links):
        _delete_link(name)
    for name in filter(gone, namespaces):
        _delete_namespace(name)
