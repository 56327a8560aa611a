"""Packaging layout; the metadata is in pyproject.toml.

The repository keeps its data at the top level (boards/, renode/, firmware/,
services/); the wheel carries each of those folders as a subpackage of
``hil.resources``, found at run time through importlib.resources
(:mod:`hil.resources`). The mapping lives here because pyproject.toml cannot
combine package discovery with renamed package directories.
"""

from setuptools import find_packages, setup

# hil.resources.<name> is the repository's top-level folder <name>/
RESOURCE_FOLDERS = ("boards", "renode", "firmware", "services")

setup(
    packages=find_packages(include=["hil", "hil.*"]) + [f"hil.resources.{name}" for name in RESOURCE_FOLDERS],
    package_dir={f"hil.resources.{name}": name for name in RESOURCE_FOLDERS},
)
