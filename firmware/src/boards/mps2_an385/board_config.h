/* Board facts for QEMU mps2-an385 (Cortex-M3), see /work/shared/docs/mps2-an385.md. */
#ifndef BOARD_CONFIG_H
#define BOARD_CONFIG_H

#define SYSCLK_HZ        25000000u

/* What the node reports in /3 (Device) */
#define BOARD_MODEL          "mps2-an385"
#define BOARD_SERIAL_NUMBER  "AN385-0001"
#define BOARD_MEMORY_KB      4096      /* data SSRAM: 4 MiB */
#define BOARD_SLIP_NAME      "SLIP on UART1"
#define BOARD_ETH_NAME       "LAN9118"

/* CMSDK APB UARTs */
#define UART0_BASE       0x40004000u
#define UART1_BASE       0x40005000u
#define UART2_BASE       0x40006000u

/* FPGA I/O: LEDs, buttons and free-running counters */
#define FPGAIO_BASE      0x40028000u

/* SMSC LAN9118 Ethernet */
#define LAN9118_BASE     0x40200000u

/* External interrupt numbers (NVIC) */
#define IRQ_UART0_RX     0
#define IRQ_UART0_TX     1
#define IRQ_UART1_RX     2
#define IRQ_UART1_TX     3
#define IRQ_UART2_RX     4
#define IRQ_UART2_TX     5
#define IRQ_ETHERNET     13
#define IRQ_COUNT        32

/* The board's interrupt handlers, for the vector table: X(irq, handler). */
#define BOARD_IRQS(X) \
    X(IRQ_UART0_RX, UART0_RX_IRQHandler) \
    X(IRQ_UART1_RX, UART1_RX_IRQHandler) \
    X(IRQ_UART2_RX, UART2_RX_IRQHandler) \
    X(IRQ_ETHERNET, ETH_IRQHandler)

#endif
