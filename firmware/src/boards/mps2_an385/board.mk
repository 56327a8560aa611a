# mps2-an385 (Cortex-M3): today's build, at today's path.
ARCH          := -mcpu=cortex-m3 -mthumb
LDSCRIPT      := link.ld
BOARD_BUILD   := build
BOARD_DEFINES :=
