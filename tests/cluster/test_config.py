"""A node refuses a bad configuration with a message that says what to fix."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.config import ConfigError, load_config
from cluster.launcher import HOST, free_port

SECRET = "a-cluster-secret-long-enough"


def _settings(tmp_path: Path, **changes: object) -> dict[str, object]:
    raft, http = f"{HOST}:{free_port()}", f"{HOST}:{free_port()}"
    settings: dict[str, object] = {
        "node_id": "n1",
        "raft": raft,
        "http": http,
        "data_dir": str(tmp_path / "data"),
        "secret": SECRET,
        "admin_token": "token",
        "peers": [{"id": "n1", "raft": raft, "http": http}],
    }
    settings.update(changes)
    return settings


def test_a_complete_config_loads_with_its_peers(tmp_path: Path) -> None:
    config = load_config(None, _settings(tmp_path))
    assert config.node_id == "n1"
    assert [p.node_id for p in config.peers] == ["n1"]
    assert config.fsync == "always"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secret": ""}, "missing cluster secret"),
        ({"secret": "short"}, "at least 16 characters"),
        ({"admin_token": ""}, "admin_token"),
        ({"fsync": "sometimes"}, "fsync must be one of"),
        ({"raft": "no-port"}, "is not host:port"),
        ({"node_id": ""}, "missing setting"),
    ],
)
def test_a_bad_setting_is_refused_with_a_clear_message(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    settings = _settings(tmp_path, **changes)
    if "raft" in changes:
        settings["peers"] = []
    with pytest.raises(ConfigError, match=message):
        load_config(None, settings)


def _replica_settings(tmp_path: Path, **changes: object) -> dict[str, object]:
    voter = {"id": "n1", "raft": f"{HOST}:{free_port()}", "http": f"{HOST}:{free_port()}"}
    settings = _settings(tmp_path, node_id="r1", replica=True, peers=[voter])
    settings.pop("raft")
    settings.update(changes)
    return settings


def test_a_replica_has_no_raft_address_and_follows_the_voters(tmp_path: Path) -> None:
    config = load_config(None, _replica_settings(tmp_path))
    assert (config.replica, config.role, config.raft) == (True, "replica", "")
    assert [p.node_id for p in config.others] == ["n1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"raft": f"{HOST}:7000"}, "a replica has no raft address"),
        ({"peers": []}, "needs the voters as peers"),
        ({"replica": "yes"}, "replica must be true or false"),
    ],
)
def test_a_bad_replica_config_is_refused(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, _replica_settings(tmp_path, **changes))


def test_a_replica_listed_among_its_own_peers_is_refused(tmp_path: Path) -> None:
    settings = _replica_settings(tmp_path)
    itself = {"id": "r1", "raft": f"{HOST}:{free_port()}", "http": str(settings["http"])}
    settings["peers"] = [*settings["peers"], itself]  # type: ignore[misc]
    with pytest.raises(ConfigError, match="a replica is not one of its peers"):
        load_config(None, settings)


def test_a_peer_list_that_disagrees_with_the_node_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings["peers"] = [{"id": "n1", "raft": f"{HOST}:1", "http": f"{HOST}:2"}]
    with pytest.raises(ConfigError, match="disagrees with its own addresses"):
        load_config(None, settings)


def test_repeated_peers_are_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    peers = list(settings["peers"])  # type: ignore[arg-type]
    settings["peers"] = [*peers, {"id": "n2", "raft": peers[0]["raft"], "http": "h:1"}]
    with pytest.raises(ConfigError, match="raft addresses repeat"):
        load_config(None, settings)


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        address = f"{HOST}:{taken.getsockname()[1]}"
        settings = _settings(tmp_path, http=address)
        settings["peers"] = [{"id": "n1", "raft": settings["raft"], "http": address}]
        with pytest.raises(ConfigError, match="not available"):
            load_config(None, settings)


def test_an_unwritable_data_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create data dir"):
        load_config(None, _settings(tmp_path, data_dir=str(blocker / "data")))


def test_an_unreadable_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("node_id = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, {})


def test_raftex_node_prints_the_problem_and_exits_2(tmp_path: Path) -> None:
    done = _node_command(tmp_path)
    assert done.returncode == 2
    assert "missing cluster secret" in done.stderr
    assert "Traceback" not in done.stderr


def _node_command(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: PLW1510 - the exit status is the point
        [
            sys.executable,
            "-m",
            "raftex.cli",
            "node",
            "--id",
            "n1",
            "--raft",
            f"{HOST}:1",
            "--http",
            f"{HOST}:2",
            "--data-dir",
            str(tmp_path),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_secret_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """Every local user can read a process's arguments (ps, /proc/PID/cmdline)."""
    for flags in (("--secret", SECRET), ("--admin-token", "token")):
        done = _node_command(tmp_path, *flags)
        assert done.returncode == 2
        assert "refusing a secret on the command line" in done.stderr
        assert "--secret-file" in done.stderr and "Traceback" not in done.stderr


def test_secrets_come_from_files_only_their_owner_can_read(tmp_path: Path) -> None:
    secret_file, token_file = tmp_path / "secret", tmp_path / "token"
    secret_file.write_text(SECRET + "\n")
    token_file.write_text("token-from-a-file\n")
    for path in (secret_file, token_file):
        path.chmod(0o600)
    settings = _settings(tmp_path, secret_file=str(secret_file), admin_token_file=str(token_file))
    del settings["secret"], settings["admin_token"]
    config = load_config(None, settings)
    assert (config.secret, config.admin_token) == (SECRET, "token-from-a-file")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match=r"open to other users .* chmod 600"):
        load_config(None, settings)
    both = _settings(tmp_path, secret_file=str(secret_file))
    with pytest.raises(ConfigError, match="not both"):
        load_config(None, both)
    missing = {**settings, "admin_token_file": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match="cannot read admin_token_file"):
        load_config(None, missing)


def test_raftex_admin_reports_an_unreachable_node_without_a_traceback() -> None:
    done = subprocess.run(  # noqa: PLW1510 - the exit status is the point
        [
            sys.executable,
            "-m",
            "raftex.cli",
            "admin",
            "--node",
            f"{HOST}:{free_port()}",
            "--token",
            "t",
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0  # status reports a node it cannot reach as down
    assert '"role": "down"' in done.stdout
    hashed = subprocess.run(  # noqa: PLW1510 - the exit status is the point
        [
            sys.executable,
            "-m",
            "raftex.cli",
            "admin",
            "--node",
            f"{HOST}:{free_port()}",
            "--token",
            "t",
            "hash",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert hashed.returncode == 1
    assert "raftex admin:" in hashed.stderr
    assert "Traceback" not in hashed.stderr
