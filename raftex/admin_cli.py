"""`raftex admin ...`: cluster operations over the nodes' admin endpoints.

Tables by default, one JSON document with `--json`. Errors are one line on
stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from cluster.admin_client import (
    AdminClient,
    AdminError,
    NodeAddress,
    read_admin_token,
    read_cluster_ca,
    read_cluster_file,
)
from cluster.keyring import KEK_ENV, KeyringError
from engine.calendar import parse_clock, parse_weekdays
from engine.codes import TradingCapacity, TradingStatus
from engine.commands import (
    SetAccountEnabled,
    SetAccountProfile,
    SetCalendar,
    SetLimitUpLimitDown,
    SetMemberRateLimit,
    SetRateLimit,
    SetTradingStatus,
    command_to_wire,
)
from raftex.backup import BackupError, take_backup
from raftex.key_rotation import rotate_key
from raftex.text_table import format_rows

STATUS_COLUMNS = (
    "id",
    "role",
    "pid",
    "http",
    "term",
    "leader",
    "commit_index",
    "applied_index",
    "lag",
    "projection_lag",
    "state_hash",
    "uptime_s",
    "last_snapshot_index",
)


def add_admin_parser(commands: argparse._SubParsersAction) -> None:
    admin = commands.add_parser("admin", help="operate a running cluster")
    where = admin.add_mutually_exclusive_group(required=True)
    where.add_argument("--node", help="one node's HTTP address, host:port")
    where.add_argument("--cluster", type=Path, help="cluster.json written by `raftex up`")
    admin.add_argument("--token", help="admin token (default: admin.token beside cluster.json)")
    admin.add_argument(
        "--ca", type=Path, help="the cluster's TLS certificate (default: from cluster.json)"
    )
    admin.add_argument("--json", action="store_true", help="print JSON")
    admin.add_argument(
        "--operator",
        default=os.environ.get("USER") or "operator",
        help="who is making a change (halts, limits, profiles, the kill switch): recorded in"
        " the audit history and the end-of-day report (default: $USER)",
    )
    # `--json` reads naturally at the end too (`raftex admin ... status --json`).
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    actions = admin.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "status", parents=[json_flag], help="every node's role, term, indexes and lag"
    )
    actions.add_parser("members", parents=[json_flag], help="the cluster membership")
    add = actions.add_parser(
        "add",
        parents=[json_flag],
        help="add a voter (start it first with all members as peers) or, with --replica, record"
        " a read replica (started with the voters as peers)",
    )
    add.add_argument("node_id")
    add.add_argument("--raft", help="the voter's Raft address (a replica has none)")
    add.add_argument("--http", required=True)
    add.add_argument("--replica", action="store_true", help="a read replica, not a voter")
    remove = actions.add_parser("remove", parents=[json_flag], help="remove a node")
    remove.add_argument("node_id")
    actions.add_parser("snapshot", parents=[json_flag], help="force log compaction on every node")
    backup = actions.add_parser(
        "backup",
        parents=[json_flag],
        help="back up the running cluster (through its leader) into a new directory",
    )
    backup.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    audit = actions.add_parser("audit", parents=[json_flag], help="audit history")
    audit.add_argument("audit_action", choices=["verify"])
    actions.add_parser(
        "hash", parents=[json_flag], help="state hashes of every node at one log index"
    )
    halt = actions.add_parser("halt", parents=[json_flag], help="halt trading in a symbol")
    halt.add_argument("symbol")
    resume = actions.add_parser("resume", parents=[json_flag], help="resume trading in a symbol")
    resume.add_argument("symbol")
    kill = actions.add_parser(
        "kill-switch", parents=[json_flag], help="disable an account and cancel its orders"
    )
    kill.add_argument("account")
    kill.add_argument("--enable", action="store_true", help="re-enable the account instead")
    profile = actions.add_parser(
        "profile",
        parents=[json_flag],
        help="set an account's compliance reference data (member, beneficial owner, LEI,"
        " trading capacity)",
    )
    profile.add_argument("account")
    profile.add_argument("--member", required=True, help="the member firm it trades through")
    profile.add_argument("--owner", required=True, help="its beneficial owner's id")
    profile.add_argument("--lei", default="", help="its LEI (ISO 17442), if it has one")
    profile.add_argument(
        "--capacity",
        choices=[c.name for c in TradingCapacity if c != TradingCapacity.ACCOUNT_DEFAULT],
        default="DEAL",
        help="the trading capacity its orders carry unless they say otherwise",
    )
    calendar = actions.add_parser(
        "calendar",
        parents=[json_flag],
        help="set a symbol's trading calendar: pre-open, opening auction, continuous"
        " trading, closing call and auction, post-close, in its own time zone",
    )
    calendar.add_argument("symbol")
    calendar.add_argument("--tz", help="IANA time zone, e.g. Europe/Berlin (default: UTC)")
    calendar.add_argument("--pre-open", default="08:00", help="HH:MM[:SS] (default 08:00)")
    calendar.add_argument("--open", default="09:00", help="the opening auction (09:00)")
    calendar.add_argument("--pre-close", default="17:30", help="the closing call (17:30)")
    calendar.add_argument("--close", default="17:35", help="the closing auction (17:35)")
    calendar.add_argument("--post-close", default="20:00", help="post-close ends (20:00)")
    calendar.add_argument("--days", default="mon-fri", help="trading weekdays (mon-fri)")
    calendar.add_argument("--holidays", default="", help="closed dates: YYYY-MM-DD,...")
    calendar.add_argument(
        "--session-s",
        type=int,
        default=86_400,
        help="session length in seconds, a divisor of a day: a short day repeats (demos)",
    )
    calendar.add_argument(
        "--clear", action="store_true", help="remove the calendar: trade continuously"
    )
    luld = actions.add_parser(
        "luld",
        parents=[json_flag],
        help="limit up-limit down bands for a symbol: a band around the mean price of the last"
        " minutes' trades, a limit state, a pause that reopens by auction",
    )
    luld.add_argument("symbol")
    luld.add_argument("--band-pct", type=Decimal, help="the symbol's tier, e.g. 5 (percent)")
    luld.add_argument("--window-s", type=int, default=300, help="the reference's window (300)")
    luld.add_argument(
        "--limit-state-s", type=int, default=15, help="how long a limit state lasts (15)"
    )
    luld.add_argument("--pause-s", type=int, default=300, help="the pause that follows (300)")
    luld.add_argument(
        "--double-open-min", type=int, default=15, help="bands doubled after the open (15)"
    )
    luld.add_argument(
        "--double-close-min", type=int, default=25, help="bands doubled before the close (25)"
    )
    luld.add_argument("--off", action="store_true", help="back to the band around the last price")
    rate = actions.add_parser(
        "rate-limit",
        parents=[json_flag],
        help="limit an account's order messages per second of log time (0: no limit)",
    )
    rate.add_argument("account")
    rate.add_argument("messages_per_s", type=int)
    member_rate = actions.add_parser(
        "member-rate-limit",
        parents=[json_flag],
        help="limit a member firm's order messages per second, all its accounts together",
    )
    member_rate.add_argument("member")
    member_rate.add_argument("messages_per_s", type=int)
    rotate = actions.add_parser(
        "rotate-key",
        parents=[json_flag],
        help="re-wrap the data key under a new key-encryption key (written to the cluster's"
        " key file; the nodes keep running)",
    )
    rotate.add_argument("--keyring", type=Path, help="the keyring (default: beside --cluster)")
    rotate.add_argument(
        "--kek-file", type=Path, help=f"the key in use (default: the cluster's, else ${KEK_ENV})"
    )
    rotate.add_argument("--new-kek-file", type=Path, help="the new key (default: a new random one)")


def run_admin(args: argparse.Namespace) -> int:
    if args.action == "rotate-key":
        return _run_rotate_key(args)
    try:
        nodes, token = _target(args)
        ca_file = args.ca or (read_cluster_ca(args.cluster) if args.cluster else None)
        result = asyncio.run(_dispatch(args, nodes, token, ca_file))
    except (AdminError, BackupError) as exc:
        print(f"raftex admin: {exc}", file=sys.stderr)
        return 1
    output, ok = result
    print(json.dumps(output, indent=2) if args.json else _table(args.action, output))
    return 0 if ok else 1


def _run_rotate_key(args: argparse.Namespace) -> int:
    try:
        result = rotate_key(
            args.cluster, args.keyring, args.kek_file, args.new_kek_file, os.environ.get(KEK_ENV)
        )
    except KeyringError as exc:
        print(f"raftex admin: {exc}; nothing was changed", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"data key {result['data_key_id']} in {result['keyring']} re-wrapped: key "
            f"{result['old_kek_id']} -> {result['new_kek_id']}; {result['next']}"
        )
    return 0


def _target(args: argparse.Namespace) -> tuple[list[NodeAddress], str]:
    if args.cluster is not None:
        nodes = read_cluster_file(args.cluster)
        token = args.token or read_admin_token(args.cluster)
    else:
        nodes = [NodeAddress(args.node, args.node)]
        token = args.token or ""
    if not token:
        raise AdminError("no admin token: pass --token or keep admin.token beside cluster.json")
    return nodes, token


async def _dispatch(
    args: argparse.Namespace, nodes: list[NodeAddress], token: str, ca_file: Path | None
) -> tuple[Any, bool]:
    async with AdminClient(token, ca_file=ca_file) as client:
        action = args.action
        if action == "status":
            rows = await client.status_all(nodes)
            return {"nodes": rows}, True
        if action == "members":
            return await _first_answer(client, nodes, "GET", "/v1/admin/members", None), True
        if action in ("add", "remove"):
            body = {"action": action, "id": args.node_id}
            if action == "add":
                body.update(_addition(args))
            return await _first_answer(client, nodes, "POST", "/v1/admin/members", body), True
        if action == "backup":
            return await take_backup(client, nodes, args.out), True
        if action == "snapshot":
            rows = []
            for node in nodes:
                rows.append(await client.call(node.http, "POST", "/v1/admin/snapshot", {}))
            return {"nodes": rows}, True
        if action == "audit":
            rows = []
            for node in nodes:
                rows.append(await client.call(node.http, "GET", "/v1/admin/audit/verify"))
            return {"nodes": rows}, all(r["ok"] for r in rows)
        if action == "hash":
            result = await client.hashes(nodes)
            return result, result["agree"]
        if action in ("halt", "resume"):
            status = TradingStatus.HALTED if action == "halt" else TradingStatus.OPEN
            wire = command_to_wire(SetTradingStatus(args.symbol, status, by=args.operator))
        elif action == "calendar":
            wire = command_to_wire(_calendar_command(args))
        elif action == "luld":
            wire = command_to_wire(_luld_command(args))
        elif action == "rate-limit":
            wire = command_to_wire(
                SetRateLimit(args.account, args.messages_per_s, by=args.operator)
            )
        elif action == "member-rate-limit":
            wire = command_to_wire(
                SetMemberRateLimit(args.member, args.messages_per_s, by=args.operator)
            )
        elif action == "profile":
            capacity = TradingCapacity[args.capacity]
            wire = command_to_wire(
                SetAccountProfile(
                    args.account, args.member, args.owner, args.lei, capacity, by=args.operator
                )
            )
        else:
            wire = command_to_wire(
                SetAccountEnabled(args.account, bool(args.enable), by=args.operator)
            )
        result = await _first_answer(client, nodes, "POST", "/v1/admin/commands", {"command": wire})
        rejected = [e for e in result["events"] if e["type"] == "rejected"]
        if rejected:
            raise AdminError(f"refused: {rejected[0]['code']} ({rejected[0]['message']})")
        return result, True


def _luld_command(args: argparse.Namespace) -> SetLimitUpLimitDown:
    """The SetLimitUpLimitDown the luld action's options describe (the engine checks the
    ranges and refuses with a clear message)."""
    if args.off:
        return SetLimitUpLimitDown(args.symbol, 0, by=args.operator)
    if args.band_pct is None:
        raise AdminError("give the band as --band-pct (e.g. 5), or --off")
    band_bps = args.band_pct * 100
    if band_bps != band_bps.to_integral_value():
        raise AdminError(f"--band-pct {args.band_pct}: at most two decimals")
    return SetLimitUpLimitDown(
        args.symbol,
        int(band_bps),
        window_ms=args.window_s * 1000,
        limit_state_ms=args.limit_state_s * 1000,
        pause_ms=args.pause_s * 1000,
        open_ms=args.double_open_min * 60_000,
        close_ms=args.double_close_min * 60_000,
        by=args.operator,
    )


def _calendar_command(args: argparse.Namespace) -> SetCalendar:
    """The SetCalendar the calendar action's options describe; AdminError on bad text (the
    engine checks the rest and refuses with a clear message)."""
    if args.clear:
        return SetCalendar(args.symbol, "", by=args.operator)
    try:
        times = [
            parse_clock(text)
            for text in (args.pre_open, args.open, args.pre_close, args.close, args.post_close)
        ]
        days = parse_weekdays(args.days)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    return SetCalendar(
        args.symbol,
        args.tz or "UTC",
        *times,
        day_s=args.session_s,
        trading_days=days,
        holidays=args.holidays,
        by=args.operator,
    )


def _addition(args: argparse.Namespace) -> dict[str, str]:
    if args.replica:
        if args.raft:
            raise AdminError("a replica has no raft address: drop --raft")
        return {"role": "replica", "http": args.http}
    if not args.raft:
        raise AdminError("adding a voter needs --raft (or --replica for a read replica)")
    return {"role": "voter", "raft": args.raft, "http": args.http}


async def _first_answer(
    client: AdminClient, nodes: list[NodeAddress], method: str, path: str, body: Any
) -> Any:
    """Asks the nodes in turn; the first that answers decides (errors of 4xx are final)."""
    errors = []
    for node in nodes:
        try:
            return await client.call(node.http, method, path, body)
        except AdminError as exc:
            if 400 <= exc.status < 500:
                raise
            errors.append(str(exc))
    raise AdminError("; ".join(errors) or "no node to ask")


def _table(action: str, output: Any) -> str:
    if action == "status":
        rows = [{**row, "projection_lag": _projection_lag(row)} for row in output["nodes"]]
        return format_rows(rows, STATUS_COLUMNS)
    if action == "members":
        return format_rows(output["members"], ("id", "role", "raft", "http")) + (
            f"\nleader: {output['leader']}"
        )
    if action == "hash":
        text = format_rows(output["nodes"], ("id", "state_hash"))
        verdict = "agree" if output["agree"] else "DISAGREE"
        return f"{text}\nindex {output['index']}: {verdict}"
    if action == "audit":
        return format_rows(output["nodes"], ("id", "ok", "records", "first_bad", "reason"))
    if action == "snapshot":
        return format_rows(output["nodes"], ("requested", "last_snapshot_index"))
    if action == "backup":
        return (
            f"backup at log index {output['index']} (term {output['term']}) from "
            f"{output['from_node']}: {output['snapshot']['bytes']:,} bytes, state hash "
            f"{output['state_hash']}"
        )
    return json.dumps(output, indent=2)


def _projection_lag(row: dict[str, Any]) -> str | None:
    """A node's projection lag as `entries/ms`, `none` where it runs none."""
    projection = row.get("projection")
    if not isinstance(projection, dict):
        return None
    if projection.get("state") != "running":
        return projection.get("state")
    return f"{projection['lag_entries']}/{projection['lag_ms']}ms"
