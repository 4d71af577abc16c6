"""Surveillance parameters: one documented TOML file (surveillance/rules.toml holds the
defaults); a file given with `--config` overrides any of them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

DEFAULTS_FILE = Path(__file__).with_name("rules.toml")
RULES = ("wash_trades", "spoofing", "marking_the_close", "momentum_ignition", "quote_stuffing")


class ConfigError(Exception):
    """A parameters file that cannot be used; the message says what to fix."""


def load_parameters(path: Path | None) -> dict[str, dict[str, float]]:
    parameters = _read(DEFAULTS_FILE)
    if path is None:
        return parameters
    for rule, values in _read(path).items():
        if rule not in parameters:
            raise ConfigError(f"{path}: unknown rule [{rule}] (rules: {', '.join(RULES)})")
        for name, value in values.items():
            if name not in parameters[rule]:
                raise ConfigError(f"{path}: [{rule}] has no parameter {name!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{path}: [{rule}] {name} must be a number >= 0, not {value!r}")
            parameters[rule][name] = value
    return parameters


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
