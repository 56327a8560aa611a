"""hil.resources: the files that ship inside the package, found through importlib.resources.

Here the package is the editable install of the checkout, so the look-ups
land in the repository's top-level folders; tests/packaging checks the same
look-ups land in site-packages for an installed wheel.
"""

from __future__ import annotations

import importlib.resources
import re
import zipfile
from pathlib import Path

import pytest

from hil import resources
from hil.boards import catalog, search_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("lookup", "package", "folder"),
    [
        (resources.boards_dir, "hil.resources.boards", "boards"),
        (resources.renode_dir, "hil.resources.renode", "renode"),
        (resources.firmware_dir, "hil.resources.firmware", "firmware"),
    ],
)
def test_folders_are_the_packages_resources(lookup, package: str, folder: str) -> None:
    found = lookup()
    assert found == Path(str(importlib.resources.files(package)))
    assert found.resolve() == (REPO / folder).resolve(), "the editable install maps the top-level folder"


def test_shipped_data_is_where_the_code_looks() -> None:
    assert {p.stem for p in resources.boards_dir().glob("*.toml")} == set(catalog())  # nothing else on the path here
    assert search_path()[-1] == resources.boards_dir()
    assert (resources.renode_dir() / "mps2_an385.repl").is_file()
    firmware = resources.firmware_dir()
    assert (firmware / "Makefile").is_file() and (firmware / "link.ld").is_file() and (firmware / "src" / "main.c").is_file()
    service = resources.service_dir("temperature_sensor")
    assert (service / "service.toml").is_file() and (service / "service.c").is_file()
    assert (resources.sdk_include_dir() / "embserve.h").is_file()
    assert resources.sdk_link_script().name == "module.ld" and resources.sdk_link_script().is_file()


def test_a_missing_resource_is_named() -> None:
    with pytest.raises(resources.ResourceError, match=r"the sources of service 'no_such_service' is missing .*no_such_service"):
        resources.service_dir("no_such_service")


def test_a_package_without_plain_files_is_refused(tmp_path: Path) -> None:
    # A zip on sys.path (zipimport) gives Traversables that compilers and emulators cannot open.
    archive = tmp_path / "embserve_hil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("hil/resources/boards/sim.toml", "")
    with pytest.raises(resources.ResourceError, match="installed without plain files"):
        resources._on_disk(zipfile.Path(archive, "hil/resources/boards/"), "the board catalog")


def test_no_run_time_path_is_relative_to_the_source_tree() -> None:
    # Everything read at run time goes through hil.resources (and so works from a wheel).
    offenders = []
    for module in sorted((REPO / "hil").rglob("*.py")):
        for number, line in enumerate(module.read_text().splitlines(), 1):
            if re.search(r"__file__|\.parents\[", line):
                offenders.append(f"{module.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "paths relative to the source tree:\n" + "\n".join(offenders)
