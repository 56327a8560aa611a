/* Board facts for the Nordic nRF52840 DK (nRF52840, Cortex-M4F at 64 MHz),
 * from the nRF52840 Product Specification v1.7: 1 MiB flash at 0, 256 KiB
 * RAM at 0x20000000, UARTE0 (the DK's J-Link VCOM) and UARTE1. */
#ifndef BOARD_CONFIG_H
#define BOARD_CONFIG_H

#define SYSCLK_HZ        64000000u   /* SysTick counts the 64 MHz CPU clock */

/* What the node reports in /3 (Device) */
#define BOARD_MODEL          "nrf52840dk"
#define BOARD_SERIAL_NUMBER  "NRF52840-0001"
#define BOARD_MEMORY_KB      256
#define BOARD_SLIP_NAME      "SLIP on UARTE1"
/* No Ethernet controller: BOARD_ETH_NAME stays undefined. */

#define UARTE0_BASE      0x40002000u
#define UARTE1_BASE      0x40028000u
#define CLOCK_BASE       0x40000000u
#define RNG_BASE         0x4000D000u

/* Peripheral interrupt numbers (the peripheral's ID) */
#define IRQ_UARTE0       2
#define IRQ_UARTE1       40
#define IRQ_COUNT        48

/* The board's interrupt handlers, for the vector table: X(irq, handler). */
#define BOARD_IRQS(X) \
    X(IRQ_UARTE0, UARTE0_IRQHandler) \
    X(IRQ_UARTE1, UARTE1_IRQHandler)

#endif
