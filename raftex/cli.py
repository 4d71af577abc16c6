"""The `raftex` command: node, local cluster, admin and benchmarks.

This is the composition root: `raftex node` is the one place where the
cluster and the api packages are wired together into a process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

from bench.api import format_api_bench, run_api_bench
from bench.cluster import (
    compare_at_rest,
    format_at_rest_comparison,
    format_cluster_bench,
    run_cluster_bench,
)
from bench.engine import REFERENCE_MATCHER, format_engine_bench, run_engine_bench
from bench.snapshot import format_snapshot_bench, run_snapshot_bench
from bench.warehouse import format_warehouse_bench, run_warehouse_bench
from chaos.cluster import PLANES
from chaos.disks import DiskError
from chaos.nemesis import NemesisError, parse_families
from chaos.netns import NetnsUnavailable
from chaos.report import format_table
from chaos.run import result_json, run_chaos
from cluster.admin_client import AdminError
from cluster.config import EXIT_KEY, ConfigError, load_config
from cluster.keyring import (
    KEK_ENV,
    KEYRING_FILE_NAME,
    KeyringError,
    create_keyring,
    default_kek_file,
    ensure_kek_file,
    load_data_key,
    read_kek_file,
)
from cluster.launcher import (
    CALENDARS,
    FIX_PORT_BASE,
    HTTP_PORT_BASE,
    LAUNCH_FILE_NAME,
    RAFT_PORT_BASE,
    SHORT_SESSION_S,
    PortBases,
    demo_calendars,
)
from cluster.node import event_log_dir
from projection.projector import projection_dir, run_projector
from raftex.admin_cli import add_admin_parser, run_admin
from raftex.backup import BackupError, restore
from raftex.demo_market import RATE_DEFAULT, run_demo_market
from raftex.drill import LOAD_SECONDS_DEFAULT, format_drill, run_drill
from raftex.node_process import run_node
from raftex.report_cli import add_report_parser, run_report
from raftex.surveil_cli import add_surveil_parser, run_surveil
from raftex.up import run_up
from raftex.warehouse_cli import add_warehouse_parser, run_warehouse

PORT_BASE_MIN = 1024
PORT_BASE_MAX = 65_000
DEMO_RATE_MAX = 1_000.0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _port_base(text: str) -> int:
    """Room above the base for five voters and the replicas (base + 10 + 8)."""
    value = _positive(text)
    if not PORT_BASE_MIN <= value <= PORT_BASE_MAX:
        raise argparse.ArgumentTypeError(f"a port base is {PORT_BASE_MIN}..{PORT_BASE_MAX}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= DEMO_RATE_MAX:
        raise argparse.ArgumentTypeError(f"a rate is more than 0 and at most {DEMO_RATE_MAX:g}/s")
    return value


def _fix_port_base(args: argparse.Namespace) -> int:
    """`raftex up --fix`: the FIX port base, once quickfix is known to be installed."""
    if not args.fix:
        return 0
    if importlib.util.find_spec("quickfix") is None:
        raise SystemExit("raftex up: --fix needs quickfix: pip install 'raftex[fix]'")
    return args.fix_port_base


def _peer(text: str) -> dict[str, str]:
    parts = text.split("=")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"peer must be ID=RAFT=HTTP, not {text!r}")
    return {"id": parts[0], "raft": parts[1], "http": parts[2]}


def _add_count(
    parser: argparse.ArgumentParser,
    flag: str,
    low: int,
    high: int,
    default: int | None,
    help_text: str,
) -> None:
    parser.add_argument(
        flag,
        type=int,
        choices=range(low, high + 1),
        default=default,
        metavar=f"{low}..{high}",
        help=help_text,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftex", description="A Raft-replicated stock exchange")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run a standard benchmark")
    targets = bench.add_subparsers(dest="target", required=True)
    engine = targets.add_parser("engine", help="the engine alone, in one process")
    engine.add_argument("--commands", type=_positive, default=200_000)
    engine.add_argument("--seed", type=int, default=1)
    engine.add_argument("--json", action="store_true", help="print one JSON object")
    engine.add_argument(
        "--reference",
        type=Path,
        default=REFERENCE_MATCHER,
        help="reference matcher to run side by side (default: shared/bench)",
    )
    engine.add_argument("--no-reference", action="store_true", help="skip the reference run")
    bench_cluster = targets.add_parser("cluster", help="a local cluster, end to end")
    bench_cluster.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    bench_cluster.add_argument("--clients", type=_positive, default=8)
    bench_cluster.add_argument("--seconds", type=_positive, default=10)
    bench_cluster.add_argument("--batch", type=_positive, default=100, help="orders per request")
    bench_cluster.add_argument(
        "--rate",
        type=int,
        default=0,
        help="offered orders/s for the latency phase (default: half the throughput measured)",
    )
    bench_cluster.add_argument("--failovers", type=int, default=1, help="leader kills to time")
    bench_cluster.add_argument(
        "--at-rest",
        choices=["encrypted", "clear", "both"],
        default="encrypted",
        help="data encrypted at rest (as `raftex up` makes it), in clear, or both side by side"
        " (the cost of encryption; no failovers)",
    )
    bench_cluster.add_argument("--seed", type=int, default=1)
    bench_cluster.add_argument("--json", action="store_true", help="print one JSON object")
    bench_api = targets.add_parser("api", help="HTTP order entry and WebSocket fan-out")
    bench_api.add_argument("--clients", type=_positive, default=16)
    bench_api.add_argument("--subscribers", type=_positive, default=100)
    _add_count(
        bench_api, "--batch", 1, 20, 1, "orders per request (above 1: POST /v1/orders/batch)"
    )
    _add_count(
        bench_api,
        "--replicas",
        0,
        8,
        0,
        "read replicas beside the 3 voters; the subscribers are spread over them",
    )
    bench_api.add_argument("--seconds", type=_positive, default=10)
    bench_api.add_argument("--json", action="store_true", help="print one JSON object")
    bench_fix = targets.add_parser(
        "fix", help="FIX order entry over one session, beside `bench api` (needs quickfix)"
    )
    bench_fix.add_argument("--orders", type=_positive, default=5_000)
    bench_fix.add_argument(
        "--window", type=_positive, default=16, help="orders sent and not yet answered, at most"
    )
    bench_fix.add_argument(
        "--api-clients", type=_positive, default=16, help="`bench api`'s HTTP clients"
    )
    bench_fix.add_argument(
        "--api-seconds", type=_positive, default=10, help="how long `bench api` runs"
    )
    bench_fix.add_argument("--json", action="store_true", help="print one JSON object")
    chaos = commands.add_parser("chaos", help="fault-injection runs against a local cluster")
    chaos_actions = chaos.add_subparsers(dest="chaos_action", required=True)
    chaos_run = chaos_actions.add_parser("run", help="workload + nemesis + checkers + report")
    chaos_run.add_argument("--nodes", type=int, choices=[3, 5], default=3, help="voters")
    _add_count(
        chaos_run,
        "--replicas",
        0,
        4,
        None,
        "read replicas (default: 1 when the replica family runs, else 0)",
    )
    chaos_run.add_argument(
        "--nemesis", default="kill,pause,partition", help="families, comma separated, or all"
    )
    chaos_run.add_argument("--seconds", type=_positive, default=60)
    chaos_run.add_argument("--seed", type=int, default=1)
    chaos_run.add_argument("--clients", type=_positive, default=6)
    chaos_run.add_argument(
        "--plane",
        choices=PLANES,
        default="auto",
        help="netns: nodes in network namespaces (root); hooks: faults inside the nodes; "
        "auto: netns where possible",
    )
    chaos_run.add_argument(
        "--fsync",
        choices=["always", "none"],
        default="always",
        help="the nodes' fsync policy (none: the power nemesis must find lost writes)",
    )
    chaos_run.add_argument("--out", type=Path, default=Path("chaos-report"))
    chaos_run.add_argument("--json", action="store_true", help="print the summary as JSON")
    bench_warehouse = targets.add_parser(
        "warehouse", help="warehouse build, every report and surveillance over a workload"
    )
    bench_warehouse.add_argument("--commands", type=_positive, default=1_000_000)
    bench_warehouse.add_argument("--seed", type=int, default=1)
    bench_warehouse.add_argument("--json", action="store_true", help="print one JSON object")
    bench_snapshot = targets.add_parser("snapshot", help="write and install a snapshot")
    bench_snapshot.add_argument("--commands", type=_positive, default=100_000)
    bench_snapshot.add_argument("--seed", type=int, default=1)
    bench_snapshot.add_argument("--json", action="store_true", help="print one JSON object")

    node = commands.add_parser("node", help="run one node (Raft, store, HTTP)")
    node.add_argument("--config", type=Path, help="TOML config file")
    node.add_argument("--id", dest="node_id")
    node.add_argument("--raft", help="this node's Raft address host:port")
    node.add_argument("--http", help="this node's HTTP address host:port")
    node.add_argument("--data-dir", dest="data_dir")
    node.add_argument(
        "--secret-file", dest="secret_file", type=Path, help="file holding the cluster secret"
    )
    node.add_argument(
        "--admin-token-file",
        dest="admin_token_file",
        type=Path,
        help="file holding the admin token",
    )
    node.add_argument(
        "--secret",
        help="cluster secret on the command line: refused without --insecure-secret-flag",
    )
    node.add_argument(
        "--admin-token",
        dest="admin_token",
        help="admin token on the command line: refused without --insecure-secret-flag",
    )
    node.add_argument(
        "--insecure-secret-flag",
        action="store_true",
        help="accept --secret and --admin-token, which every local user can read in the"
        " process list",
    )
    node.add_argument(
        "--replica",
        action="store_true",
        default=None,
        help="a read replica: follows the voters given as --peer, never votes (no --raft)",
    )
    node.add_argument("--fsync", choices=["always", "none"])
    node.add_argument("--tls-cert", dest="tls_cert", help="PEM certificate: serve HTTPS")
    node.add_argument("--tls-key", dest="tls_key", help="PEM private key of --tls-cert")
    node.add_argument(
        "--keyring-file",
        dest="keyring_file",
        help="encrypt at rest: the cluster's keyring (`raftex new-keyring` makes it)",
    )
    node.add_argument(
        "--kek-file",
        dest="kek_file",
        help=f"the key-encryption key that opens the keyring (else ${KEK_ENV})",
    )
    node.add_argument(
        "--peer",
        dest="peers",
        action="append",
        type=_peer,
        default=[],
        metavar="ID=RAFT=HTTP",
        help="a cluster member (repeat for each voter, self included; a replica lists the"
        " voters only)",
    )

    project = commands.add_parser(
        "project", help="project a node's event log into its history store (what a node runs)"
    )
    project.add_argument(
        "--node",
        "--data-dir",
        dest="data_dir",
        type=Path,
        required=True,
        help="the node's data directory",
    )
    project.add_argument("--keyring", type=Path, help="the node's keyring (encrypted at rest)")
    project.add_argument(
        "--kek-file", type=Path, help=f"its key-encryption key file (else ${KEK_ENV})"
    )
    project.add_argument(
        "--parent-pid",
        type=_positive,
        default=0,
        help="stop when this process (the node that started it) is no longer its parent",
    )

    up = commands.add_parser("up", help="start a local cluster on 127.0.0.1")
    up.add_argument("--nodes", type=int, choices=[3, 5], default=3, help="voters")
    _add_count(up, "--replicas", 0, 8, 0, "read replicas")
    up.add_argument("--data-dir", type=Path, default=Path("data"))
    up.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a generated self-signed certificate"
    )
    up.add_argument(
        "--http-port-base",
        type=_port_base,
        default=HTTP_PORT_BASE,
        help="n1's HTTP port in a new cluster, n2's the next (replicas from base+10); a port "
        "that is taken is replaced by a free one",
    )
    up.add_argument(
        "--raft-port-base", type=_port_base, default=RAFT_PORT_BASE, help="n1's Raft port, ..."
    )
    up.add_argument(
        "--fix",
        action="store_true",
        help="serve FIX 4.4 order entry on every node of a new cluster (needs the fix extra:"
        " quickfix)",
    )
    up.add_argument(
        "--fix-port-base",
        type=_port_base,
        default=FIX_PORT_BASE,
        help="with --fix: n1's FIX port, n2's the next (replicas from base+10)",
    )
    up.add_argument(
        "--demo-market",
        action="store_true",
        help="run a market maker and noise traders on the demo accounts (what `make run` does)",
    )
    up.add_argument(
        "--calendar",
        choices=CALENDARS,
        help="the demo instruments' trading day: a New York day (default), a short day that"
        " repeats every --session-s seconds (default with --demo-market), or none",
    )
    up.add_argument(
        "--session-s",
        type=int,
        default=SHORT_SESSION_S,
        help=f"the short day's length in seconds, a divisor of a day (default {SHORT_SESSION_S})",
    )
    up.add_argument(
        "--demo-rate",
        type=_rate,
        default=RATE_DEFAULT,
        help=f"the demo market's actions per second in all (default {RATE_DEFAULT:g})",
    )
    up.add_argument(
        "--kek-file",
        type=Path,
        help="a new cluster's key-encryption key file (made if missing; default "
        "~/.config/raftex/kek), or where an existing encrypted cluster's key file is now",
    )
    up.add_argument(
        "--no-encryption",
        dest="encrypt",
        action="store_false",
        help="keep a new cluster's data in clear (by default it is encrypted at rest)",
    )
    up.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="leave a node that exits down (by default it is restarted after a back-off)",
    )

    restore_cmd = commands.add_parser(
        "restore", help="write a new local cluster that starts from a backup"
    )
    restore_cmd.add_argument(
        "--from", dest="backup", type=Path, required=True, help="what `admin backup` wrote"
    )
    restore_cmd.add_argument(
        "--data-dir", type=Path, required=True, help="a new or empty directory"
    )
    restore_cmd.add_argument(
        "--secret-file",
        type=Path,
        required=True,
        help="the cluster secret of the cluster the backup came from",
    )
    restore_cmd.add_argument(
        "--kek-file",
        type=Path,
        help="the key-encryption key that opens an encrypted backup's keyring; with a backup"
        " in clear, the key to encrypt the new cluster under",
    )
    restore_cmd.add_argument(
        "--keyring",
        type=Path,
        help="after a key rotation: the cluster's keyring now, which --kek-file (the current"
        " key) opens; it must hold the backup's data key",
    )
    restore_cmd.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    restore_cmd.add_argument("--json", action="store_true")

    drill = commands.add_parser(
        "drill",
        help="a disaster-recovery drill: back up under load, destroy, restore, check; RPO, RTO",
    )
    drill.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    drill.add_argument(
        "--seconds", type=_rate, default=LOAD_SECONDS_DEFAULT, help="seconds of load in all"
    )
    drill.add_argument("--json", action="store_true")

    demo = commands.add_parser(
        "demo-market",
        help="trade on a local cluster with the demo accounts' keys (what `raftex up "
        "--demo-market` runs)",
    )
    demo.add_argument("--data-dir", type=Path, default=Path("data"))
    demo.add_argument("--rate", type=_rate, default=RATE_DEFAULT, help="actions per second")
    demo.add_argument("--seed", type=_positive, default=None, help="the same seed, the same orders")

    new_kek = commands.add_parser(
        "new-kek", help="make a key-encryption key (32 random bytes, base64) for a cluster"
    )
    new_kek.add_argument(
        "--out", type=Path, required=True, help="a new file (mode 0600), apart from any data"
    )

    new_keyring = commands.add_parser(
        "new-keyring",
        help="make a cluster's keyring: a new data key wrapped by a key-encryption key",
    )
    new_keyring.add_argument("--kek-file", type=Path, required=True)
    new_keyring.add_argument("--out", type=Path, required=True, help="a new file")

    add_admin_parser(commands)
    add_warehouse_parser(commands)
    add_report_parser(commands)
    add_surveil_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "node":
        return _run_node(args)
    if args.command == "project":
        return _run_projector(args)
    if args.command == "up":
        bases = PortBases(args.http_port_base, args.raft_port_base)
        if bases.overlap():
            print(
                "raftex up: --http-port-base and --raft-port-base overlap (HTTP takes base to"
                " base+17, Raft base to base+4); choose bases further apart",
                file=sys.stderr,
            )
            return 2
        demo_rate = args.demo_rate if args.demo_market else 0.0
        kek_file = _up_kek_file(args)
        calendar = args.calendar or ("short" if args.demo_market else "day")
        return run_up(
            args.nodes,
            args.data_dir,
            args.tls,
            args.replicas,
            bases,
            args.restart,
            demo_rate,
            kek_file,
            demo_calendars(calendar, args.session_s),
            _fix_port_base(args),
        )
    if args.command == "restore":
        return _run_restore(args)
    if args.command == "drill":
        return _run_drill(args)
    if args.command == "demo-market":
        return run_demo_market(args.data_dir, args.rate, args.seed or 0)
    if args.command == "admin":
        return run_admin(args)
    if args.command == "warehouse":
        return run_warehouse(args)
    if args.command == "report":
        return run_report(args)
    if args.command == "surveil":
        return run_surveil(args)
    if args.command == "new-keyring":
        try:
            data_key = create_keyring(args.out, read_kek_file(args.kek_file))
        except KeyringError as exc:
            print(f"raftex new-keyring: {exc}", file=sys.stderr)
            return 1
        print(f"raftex: keyring {args.out} holds data key {data_key.key_id}")
        return 0
    if args.command == "new-kek":
        if args.out.exists():
            print(f"raftex new-kek: {args.out} exists; choose a new file", file=sys.stderr)
            return 1
        ensure_kek_file(args.out)
        print(f"raftex: a new key-encryption key in {args.out}")
        return 0
    if args.command == "chaos":
        return _run_chaos(args)
    try:
        return _run_bench(args)
    except AdminError as exc:
        print(f"raftex bench: the local cluster did not come up or answer: {exc}", file=sys.stderr)
        return 1


def _run_bench(args: argparse.Namespace) -> int:
    if args.command == "bench" and args.target == "cluster" and args.at_rest == "both":
        compared = compare_at_rest(
            args.nodes, args.clients, args.seconds, args.batch, args.rate, args.seed
        )
        print(format_at_rest_comparison(compared, args.json))
        return 0
    if args.command == "bench" and args.target == "cluster":
        result = run_cluster_bench(
            args.nodes,
            args.clients,
            args.seconds,
            args.batch,
            args.rate,
            args.failovers,
            args.seed,
            encrypted=args.at_rest == "encrypted",
        )
        print(format_cluster_bench(result, args.json))
        return 0
    if args.command == "bench" and args.target == "api":
        result = run_api_bench(
            args.clients, args.subscribers, args.seconds, args.batch, args.replicas
        )
        print(format_api_bench(result, args.json))
        return 0
    if args.command == "bench" and args.target == "fix":
        if importlib.util.find_spec("quickfix") is None:
            print("raftex bench fix: needs quickfix: pip install 'raftex[fix]'", file=sys.stderr)
            return 2
        # Imported only here: the rest of the CLI runs without the fix extra (quickfix).
        from bench.fix import format_fix_bench, run_fix_bench  # noqa: PLC0415

        result = run_fix_bench(args.orders, args.window, args.api_clients, args.api_seconds)
        print(format_fix_bench(result, args.json))
        return 0
    if args.command == "bench" and args.target == "warehouse":
        result = run_warehouse_bench(args.commands, args.seed)
        print(format_warehouse_bench(result, args.json))
        return 0
    if args.command == "bench" and args.target == "snapshot":
        print(format_snapshot_bench(run_snapshot_bench(args.commands, args.seed), args.json))
        return 0
    if args.command == "bench" and args.target == "engine":
        reference = None if args.no_reference else args.reference
        result = run_engine_bench(args.commands, args.seed, reference)
        print(format_engine_bench(result, args.json))
        return 0
    return 2


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_chaos(args: argparse.Namespace) -> int:
    try:
        families = parse_families(args.nemesis)
    except NemesisError as exc:
        print(f"raftex chaos: {exc}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"raftex chaos: cannot write the report to {args.out}: {exc.strerror}", file=sys.stderr
        )
        return 2
    # SIGTERM unwinds like Ctrl-C, so the run stops its nodes and removes its namespaces
    # (while the run's event loop turns, the loop handles both signals: chaos/run.py).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_chaos(
            args.nodes,
            families,
            args.seconds,
            args.seed,
            args.out,
            args.clients,
            args.plane,
            args.replicas,
            args.fsync,
        )
    except KeyboardInterrupt:
        print("raftex chaos: interrupted; the cluster is stopped and cleaned up", file=sys.stderr)
        return 130
    except AdminError as exc:
        print(f"raftex chaos: the cluster did not come up or answer: {exc}", file=sys.stderr)
        return 1
    except NetnsUnavailable as exc:
        print(f"raftex chaos: cannot build the namespace plane: {exc}", file=sys.stderr)
        return 1
    except NemesisError as exc:
        print(f"raftex chaos: {exc}", file=sys.stderr)
        return 2
    except DiskError as exc:
        print(f"raftex chaos: {exc}", file=sys.stderr)
        return 1
    summary = result_json(result)
    print(json.dumps(summary) if args.json else format_table(summary))
    return 0 if result.ok else 1


def _run_projector(args: argparse.Namespace) -> int:
    data_key = None
    if args.keyring is None and (args.data_dir.parent / KEYRING_FILE_NAME).exists():
        print(
            f"raftex project: {args.data_dir} belongs to a cluster encrypted at rest: give "
            "--keyring and --kek-file (or RAFTEX_KEK)",
            file=sys.stderr,
        )
        return EXIT_KEY
    if args.keyring is not None:
        try:
            data_key = load_data_key(args.keyring, args.kek_file, os.environ.get(KEK_ENV))
        except KeyringError as exc:
            print(f"raftex project: {exc}", file=sys.stderr)
            return EXIT_KEY
    return run_projector(
        event_log_dir(args.data_dir), projection_dir(args.data_dir), args.parent_pid, data_key
    )


def _up_kek_file(args: argparse.Namespace) -> Path | None:
    """The key file `raftex up` gives a new cluster (made if missing), or None: in clear, or
    an existing cluster that keeps what it was created with."""
    new = not (args.data_dir / LAUNCH_FILE_NAME).exists()
    if not args.encrypt and args.kek_file is not None:
        raise SystemExit("raftex up: --no-encryption and --kek-file contradict each other")
    if not new or not args.encrypt:
        return args.kek_file
    path = args.kek_file or default_kek_file(os.environ)
    if ensure_kek_file(path):
        print(f"raftex up: a new key-encryption key in {path}; keep it apart from the data")
    return path


def _run_restore(args: argparse.Namespace) -> int:
    try:
        secret = args.secret_file.read_text().strip()
    except OSError as exc:
        print(f"raftex restore: cannot read {args.secret_file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        result = restore(
            args.backup,
            args.data_dir,
            secret,
            args.nodes,
            kek_file=args.kek_file,
            keyring=args.keyring,
        )
    except BackupError as exc:
        print(f"raftex restore: {exc}; nothing was written", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"raftex: a {args.nodes}-node cluster restored at log index {result['index']} in")
        print(f"  {result['data_dir']}; start it with: raftex up --data-dir {result['data_dir']}")
    return 0


def _run_drill(args: argparse.Namespace) -> int:
    try:
        result = run_drill(args.nodes, args.seconds)
    except (AdminError, BackupError) as exc:
        print(f"raftex drill: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else format_drill(result))
    return 0 if result["ok"] else 1


def _run_node(args: argparse.Namespace) -> int:
    if (args.secret or args.admin_token) and not args.insecure_secret_flag:
        print(
            "raftex node: refusing a secret on the command line, where every local user can"
            " read it in the process list; use the config file or --secret-file and"
            " --admin-token-file (or --insecure-secret-flag to accept it anyway)",
            file=sys.stderr,
        )
        return 2
    overrides = {
        k: getattr(args, k)
        for k in (
            "node_id",
            "raft",
            "http",
            "data_dir",
            "secret",
            "secret_file",
            "admin_token",
            "admin_token_file",
            "fsync",
            "replica",
            "peers",
            "tls_cert",
            "tls_key",
            "keyring_file",
            "kek_file",
        )
    }
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"raftex node: {exc}", file=sys.stderr)
        return exc.exit_code
    return run_node(config)


if __name__ == "__main__":
    sys.exit(main())
