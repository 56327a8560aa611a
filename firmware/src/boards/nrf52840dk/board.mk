# nRF52840 (Cortex-M4F). The FPU is used with the softfp ABI: floats still
# pass in core registers, as the soft-float service modules expect, and the
# scheduler saves a thread's FPU registers when it has used them. The service
# pool shares the 256 KiB of RAM with everything else.
ARCH          := -mcpu=cortex-m4 -mthumb -mfloat-abi=softfp -mfpu=fpv4-sp-d16
LDSCRIPT      := $(BOARD_DIR)/link.ld
BOARD_BUILD   := build/$(BOARD)
BOARD_DEFINES := -DRT_POOL_BYTES=98304u  # 96 KiB
