/* Board facts for QEMU mps2-an385 (Cortex-M3), see /work/shared/docs/mps2-an385.md. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#define FW_NAME          "embServe reference firmware"
#define FW_VERSION       "0.1.0"
#define FW_SDK_API       1

#define SYSCLK_HZ        25000000u

#define REG32(addr)      (*(volatile uint32_t *)(addr))

/* CMSDK APB UARTs */
#define UART0_BASE       0x40004000u
#define UART1_BASE       0x40005000u
#define UART2_BASE       0x40006000u

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

/* System control space */
#define SCB_ICSR         REG32(0xE000ED04u)
#define SCB_VTOR         REG32(0xE000ED08u)
#define SCB_AIRCR        REG32(0xE000ED0Cu)
#define SCB_SHPR3        REG32(0xE000ED20u)
#define SYST_CSR         REG32(0xE000E010u)
#define SYST_RVR         REG32(0xE000E014u)
#define SYST_CVR         REG32(0xE000E018u)
#define NVIC_ISER(n)     REG32(0xE000E100u + 4u * (n))
#define NVIC_ICER(n)     REG32(0xE000E180u + 4u * (n))
#define NVIC_ICPR(n)     REG32(0xE000E280u + 4u * (n))
#define NVIC_IPR8(irq)   (*(volatile uint8_t *)(0xE000E400u + (irq)))

static inline void nvic_enable(int irq)        { NVIC_ISER(irq >> 5) = 1u << (irq & 31); }
static inline void nvic_disable(int irq)       { NVIC_ICER(irq >> 5) = 1u << (irq & 31); }
static inline void nvic_clear_pending(int irq) { NVIC_ICPR(irq >> 5) = 1u << (irq & 31); }

static inline uint32_t irq_save(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(primask) :: "memory");
    return primask;
}

static inline void irq_restore(uint32_t primask)
{
    __asm__ volatile("msr primask, %0" :: "r"(primask) : "memory");
}

/* Requests a system reset; with QEMU -no-reboot the emulator exits instead. */
void board_reset(void) __attribute__((noreturn));

/* Whatever entropy the board has at boot (timer phase, ...); may be weak or
 * constant under an emulator: bootseed.c mixes it with a boot counter. */
uint32_t board_entropy(void);

#endif
