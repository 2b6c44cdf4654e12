"""Reading a config file as a careful user would want it read: strictly.

PyYAML's ``safe_load`` runs no code, but it still (1) keeps the *last* of two
equal keys, so a duplicated ``epsilons:`` silently drops the first list; (2)
expands aliases, so a ten-line "billion laughs" file becomes 10⁹ nodes that
hang validation; and a config file handed to it may be (3) binary or (4)
huge. Each of those becomes one ConfigError line here, naming the file and
the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "read_config_text", "load_yaml"]

#: a matrix or options file is a few kB; anything this large is not one
MAX_CONFIG_BYTES = 1 << 20


def read_config_text(path: Path) -> str:
    """The file's text: at most :data:`MAX_CONFIG_BYTES`, UTF-8, or one ConfigError line."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes is too large for a config file "
                          f"(at most {MAX_CONFIG_BYTES:,}); pass the YAML matrix file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); pass a YAML file") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed in a "
                "config file (they can expand without bound); write the values out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"line {line}: key {key!r} appears twice (first on line {seen[key]}); "
                                  "keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse ``text`` strictly; a ConfigError names ``source`` and the line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: too large for a config file (at most {MAX_CONFIG_BYTES:,} bytes)")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"{source} {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}{line}: malformed YAML: {problem}") from None
