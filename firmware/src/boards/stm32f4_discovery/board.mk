# STM32F407 (Cortex-M4F), FPU with the softfp ABI as on the nRF52840. Only
# 128 KiB of SRAM can hold service code and DMA buffers: link.ld moves the
# main stack and the CPU-only state of the CoAP layer and the service
# runtime modules into the 64 KiB CCM RAM, and the service pool gets 48 KiB.
ARCH          := -mcpu=cortex-m4 -mthumb -mfloat-abi=softfp -mfpu=fpv4-sp-d16
LDSCRIPT      := $(BOARD_DIR)/link.ld
BOARD_BUILD   := build/$(BOARD)
BOARD_DEFINES := -DRT_POOL_BYTES=49152u  # 48 KiB
