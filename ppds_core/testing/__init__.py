"""Tools for testing plugins: the conformance kit and throw-away distributions."""

from .conformance import (
    check_dataset,
    check_evaluator,
    check_generator,
    check_plugin,
    check_plugin_class,
    tiny_imageset,
)
from .distributions import make_plugin_distribution, plugin_path

__all__ = [
    "check_plugin",
    "check_plugin_class",
    "check_generator",
    "check_evaluator",
    "check_dataset",
    "tiny_imageset",
    "make_plugin_distribution",
    "plugin_path",
]
