"""Tools for testing plugins: the conformance kit and throw-away distributions."""

from ._context import KitGenerator, make_eval_context, tiny_imageset, tiny_splits
from .conformance import (
    check_dataset,
    check_evaluator,
    check_generator,
    check_ledger,
    check_plugin,
    check_plugin_class,
)
from .distributions import make_plugin_distribution, plugin_path

__all__ = [
    "check_plugin",
    "check_plugin_class",
    "check_generator",
    "check_evaluator",
    "check_dataset",
    "check_ledger",
    "tiny_imageset",
    "tiny_splits",
    "make_eval_context",
    "KitGenerator",
    "make_plugin_distribution",
    "plugin_path",
]
