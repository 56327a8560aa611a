"""Files shipped inside the package, found through importlib.resources.

The repository keeps its data in top-level folders; the package carries each
one as a subpackage of this one (setup.py maps them)::

    boards/    -> hil.resources.boards     the board catalog
    renode/    -> hil.resources.renode     Renode platforms and scripts
    firmware/  -> hil.resources.firmware   the reference firmware's sources and Makefile
    services/  -> hil.resources.services   the project's sample services

the SDK's header and link script live in :mod:`hil.sdk`, and the LwM2M
object definitions generated from the OMA registry in this package itself
(``lwm2m_objects.json``), as does the live fleet page (``fleet_page/``). Everything the
library, the CLI and the plugin read at run time is looked up here, so it is
found the same way in an installed wheel and in the editable install of a
checkout, never through paths relative to the repository.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


class ResourceError(RuntimeError):
    """A file that ships with embserve-hil is not where the package says it is."""


def _on_disk(resource: Traversable, what: str) -> Path:
    # Compilers, make and the emulators take real paths; pip installs a wheel as
    # plain files, so anything else is an install we cannot work from.
    if not isinstance(resource, Path):
        raise ResourceError(f"{what}: embserve-hil is installed without plain files ({resource!r}); install it with pip")
    if not resource.exists():
        raise ResourceError(f"{what} is missing from the installed embserve-hil: {resource} (reinstall the package)")
    return resource


def boards_dir() -> Path:
    """The shipped board catalog (``*.toml``)."""
    return _on_disk(files("hil.resources.boards"), "the board catalog")


def renode_dir() -> Path:
    """The shipped Renode platforms (``.repl``) and scripts (``.resc``)."""
    return _on_disk(files("hil.resources.renode"), "the Renode platforms")


def firmware_dir() -> Path:
    """The reference firmware's sources: ``Makefile``, ``link.ld``, ``src/``."""
    return _on_disk(files("hil.resources.firmware"), "the reference firmware's sources")


def service_dir(name: str) -> Path:
    """Sources of one of the project's own services, e.g. ``temperature_sensor``."""
    return _on_disk(files("hil.resources.services") / name, f"the sources of service {name!r}")


def sdk_include_dir() -> Path:
    """The directory holding ``embserve.h``, the API a service is written against."""
    return _on_disk(files("hil.sdk") / "include", "the SDK's include directory")


def sdk_link_script() -> Path:
    """``module.ld``, the link script of a service module."""
    return _on_disk(files("hil.sdk") / "module.ld", "the SDK's link script")


def lwm2m_objects() -> Path:
    """The LwM2M object definitions (JSON), generated from the OMA registry by ``scripts/lwm2m_objects``."""
    return _on_disk(files("hil.resources") / "lwm2m_objects.json", "the LwM2M object definitions")


def fleet_page_file(name: str) -> Path:
    """A file of the live fleet page the gateway serves: ``index.html``, ``fleet.js``, ``fleet.css``."""
    return _on_disk(files("hil.resources") / "fleet_page" / name, f"the fleet page's {name}")
