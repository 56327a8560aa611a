"""The Debian ``gcc-arm-none-eabi`` toolchain and the flags a module needs."""

from __future__ import annotations

import shutil
import subprocess

from .. import resources

GCC = "arm-none-eabi-gcc"
APT_PACKAGE = "gcc-arm-none-eabi"

# Position independent through r9 (the LOT), never PC-relative to data; every
# call to another module goes through the LOT (-mlong-calls).
CFLAGS = [
    "-mcpu=cortex-m4",
    "-mthumb",
    "-mfloat-abi=soft",
    "-Os",
    "-fPIE",
    "-msingle-pic-base",
    "-mpic-register=r9",
    "-mno-pic-data-is-text-relative",
    "-mlong-calls",
    "-fno-inline",
    "-fno-section-anchors",
    "-fno-common",
    "-ffreestanding",
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-Wall",
    "-g",  # DWARF for the kept ELF (symbolized faults, debuggers); the module's bytes do not change
]
LIBS = ["-lgcc"]  # soft-float helpers live in the module: the firmware exports no __aeabi_*


def ldflags() -> list[str]:
    return [
        "-nostdlib",
        "-nostartfiles",
        f"-Wl,-T,{resources.sdk_link_script()}",
        "-Wl,--unresolved-symbols=ignore-in-object-files",
        "-Wl,--emit-relocs",
    ]


class ToolchainError(RuntimeError):
    pass


def find_gcc() -> str:
    path = shutil.which(GCC)
    if path is None:
        raise ToolchainError(
            f"{GCC} not found on PATH: install the Debian package {APT_PACKAGE} (apt-get install {APT_PACKAGE})"
        )
    return path


def version(gcc: str) -> str:
    return subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise ToolchainError(f"{what} failed (exit {result.returncode}):\n{output}")
