"""Package discovery only; everything else lives in pyproject.toml.

`plugins/` ships as the import package `ppds_plugins`. setuptools' declarative
config cannot map a folder to another name *and* discover its sub-packages, so
the list is computed here.
"""

from setuptools import find_packages, setup

core = find_packages(include=["ppds_core", "ppds_core.*"])
plugins = ["ppds_plugins"] + [f"ppds_plugins.{p}" for p in find_packages("plugins")]

setup(packages=core + plugins, package_dir={"ppds_plugins": "plugins"})
