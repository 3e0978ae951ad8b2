"""The Flickr API key: from FLICKR_API_KEY, else `api_key` in harvest's config file.

The key is a secret: it is read here and handed to the client, and no message raised here
quotes the config file's contents.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from harvester.exceptions import ConfigError

API_KEY_ENV = "FLICKR_API_KEY"


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """~/.config/harvest/config.toml, honouring XDG_CONFIG_HOME."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "harvest" / "config.toml"


def load_api_key(environ: Mapping[str, str] | None = None, config_path: Path | None = None) -> str:
    """The API key from FLICKR_API_KEY, else `api_key` in the config file; ConfigError if none."""
    env = os.environ if environ is None else environ
    key = env.get(API_KEY_ENV, "").strip()
    if key:
        return key
    path = config_path or default_config_path(env)
    key = _key_from_file(path)
    if key:
        return key
    raise ConfigError(f'no Flickr API key: set {API_KEY_ENV} or put api_key = "..." in {path}')


def _key_from_file(path: Path) -> str:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # The decoder's message names a line and column, never the file's contents.
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    value = data.get("api_key", "")
    if not isinstance(value, str):
        raise ConfigError(f"{path}: api_key must be a string")
    return value.strip()
