"""The keyring: the data key wrapped by the operator's key-encryption key, and how a node's
configuration finds both."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from cluster.config import EXIT_KEY, ConfigError, load_config
from cluster.keyring import (
    KEK_ENV,
    KeyringError,
    create_keyring,
    ensure_kek_file,
    load_data_key,
    open_keyring,
    parse_kek,
    read_kek_file,
    rotate_kek,
)
from cluster.launcher import free_port


def _kek_file(directory: Path, name: str = "kek") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    ensure_kek_file(path)
    return path


def test_the_data_key_opens_with_its_kek_only(tmp_path: Path) -> None:
    kek = read_kek_file(_kek_file(tmp_path / "keys"))
    keyring = tmp_path / "keyring.json"
    data_key = create_keyring(keyring, kek)
    assert open_keyring(keyring, kek) == data_key
    assert base64.b64encode(data_key.key).decode() not in keyring.read_text()
    other = read_kek_file(_kek_file(tmp_path / "keys", "other"))
    with pytest.raises(KeyringError, match=r"wrong key-encryption key: key .* does not open"):
        open_keyring(keyring, other)
    with pytest.raises(KeyringError, match="exists"):
        create_keyring(keyring, kek)


@pytest.mark.parametrize(
    "text", ["", "not base64 at all!", base64.b64encode(b"short").decode(), "A" * 60]
)
def test_a_kek_that_is_not_32_bytes_of_base64_is_refused(text: str) -> None:
    with pytest.raises(KeyringError, match="is not a key-encryption key: expected 32"):
        parse_kek(text, "the test key")


def test_a_kek_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = _kek_file(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match=r"open to other users .* chmod 600"):
        read_kek_file(path)


def test_rotation_rewraps_and_every_step_leaves_a_keyring_some_key_opens(
    tmp_path: Path,
) -> None:
    kek_file = _kek_file(tmp_path / "keys")
    old = read_kek_file(kek_file)
    keyring = tmp_path / "keyring.json"
    data_key = create_keyring(keyring, old)
    new = read_kek_file(_kek_file(tmp_path / "keys", "new"))
    # Rotation from the environment: no key file to replace, so both wraps stay.
    rotate_kek(keyring, None, old, new)
    assert open_keyring(keyring, old) == open_keyring(keyring, new) == data_key
    assert len(json.loads(keyring.read_text())["wraps"]) == 2
    newer = read_kek_file(_kek_file(tmp_path / "keys", "newer"))
    rotate_kek(keyring, kek_file, new, newer)
    assert read_kek_file(kek_file) == newer
    assert open_keyring(keyring, newer) == data_key
    for retired in (old, new):
        with pytest.raises(KeyringError, match="wrong key-encryption key"):
            open_keyring(keyring, retired)
    with pytest.raises(KeyringError, match="nothing to rotate"):
        rotate_kek(keyring, kek_file, newer, newer)


def _node_config(tmp_path: Path, extra: str) -> Path:
    config = tmp_path / "n1.toml"
    config.write_text(
        f'node_id = "n1"\nraft = "127.0.0.1:{free_port()}"\nhttp = "127.0.0.1:{free_port()}"\n'
        f'data_dir = "{tmp_path / "n1"}"\nsecret = "a-cluster-secret-of-length"\n'
        f'admin_token = "token"\n{extra}'
    )
    return config


def test_a_node_config_unwraps_the_data_key_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kek_file = _kek_file(tmp_path / "keys")
    keyring = tmp_path / "cluster" / "keyring.json"
    keyring.parent.mkdir()
    data_key = create_keyring(keyring, read_kek_file(kek_file))
    by_file = _node_config(tmp_path, f'keyring_file = "{keyring}"\nkek_file = "{kek_file}"\n')
    assert load_config(by_file, {}).data_key == data_key

    by_env = _node_config(tmp_path, f'keyring_file = "{keyring}"\n')
    with pytest.raises(ConfigError, match=f"no key-encryption key was given.*{KEK_ENV}") as info:
        load_config(by_env, {})
    assert info.value.exit_code == EXIT_KEY
    monkeypatch.setenv(KEK_ENV, kek_file.read_text())
    assert load_config(by_env, {}).data_key == data_key
    monkeypatch.setenv(KEK_ENV, read_kek_file(_kek_file(tmp_path / "keys", "x")).hex())
    with pytest.raises(ConfigError, match="is not a key-encryption key"):
        load_config(by_env, {})


def test_a_kek_kept_beside_the_data_is_refused(tmp_path: Path) -> None:
    keyring = tmp_path / "cluster" / "keyring.json"
    keyring.parent.mkdir()
    beside = _kek_file(tmp_path / "cluster")
    create_keyring(keyring, read_kek_file(beside))
    config = _node_config(tmp_path, f'keyring_file = "{keyring}"\nkek_file = "{beside}"\n')
    with pytest.raises(ConfigError, match="beside the data it protects"):
        load_config(config, {})
    assert load_data_key(keyring, beside, None) is not None  # the key itself is fine
