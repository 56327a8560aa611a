/* The board layer: what the firmware needs from the board it runs on.
 *
 * One build per board (make BOARD=...): the Makefile defines FW_BOARD_<NAME>
 * and compiles src/boards/<name>/, whose board_config.h holds the board's
 * facts (clock, memory, interrupt numbers, names the node reports) and whose
 * sources implement the functions declared here. Everything outside
 * src/boards/ is the same on every board. Without a FW_BOARD_ macro (the
 * host-side unit tests) the facts are mps2-an385's. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#define FW_NAME          "embServe reference firmware"
#define FW_VERSION       "0.1.0"
#define FW_SDK_API       1

#define REG32(addr)      (*(volatile uint32_t *)(addr))

#if defined(FW_BOARD_NRF52840DK)
#include "boards/nrf52840dk/board_config.h"
#elif defined(FW_BOARD_STM32F4_DISCOVERY)
#include "boards/stm32f4_discovery/board_config.h"
#else
#include "boards/mps2_an385/board_config.h"
#endif

/* System control space (every ARMv7-M core) */
#define SCB_ICSR         REG32(0xE000ED04u)
#define SCB_VTOR         REG32(0xE000ED08u)
#define SCB_AIRCR        REG32(0xE000ED0Cu)
#define SCB_SHPR3        REG32(0xE000ED20u)
#define SCB_CPACR        REG32(0xE000ED88u)
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

/* Clocks, pins and the FPU: the first thing main() does. */
void board_init(void);

/* Requests a system reset; with QEMU -no-reboot the emulator exits instead. */
void board_reset(void) __attribute__((noreturn));

/* How many SysTick periods (milliseconds) have passed since the last call,
 * from SysTick's interrupt: 1, unless the board has a free-running counter
 * to tell. An emulator that skips idle time (QEMU's -icount sleep=off) can
 * fire the timer twice before the CPU takes the first interrupt; counting
 * interrupts would then lose time, so boards that can count cycles do. */
uint32_t board_systick_periods(void);

/* Nonzero when board_systick_periods counts cycles of a free-running counter
 * (then SysTick may tick less often while the node idles: systick.c). */
int board_counts_time(void);

/* Whatever entropy the board has at boot (a hardware RNG where the board has
 * one, else timer phase); may be weak or constant under an emulator, whose
 * boots repeat exactly: bootseed.c mixes it with a boot counter. */
uint32_t board_entropy(void);

/* ---- the two UART ports: port 0 is the console, port 1 the SLIP line ----
 * src/uart.c keeps the receive rings; a board implements the hardware side.
 * The board's receive interrupt handler calls uart_rx_isr(port). */
#define UART_CONSOLE 0
#define UART_SLIP    1
void uart_hw_init(int port);
/* A received byte is waiting. */
int  uart_hw_rx_ready(int port);
/* Takes the waiting byte; the port may then receive the next one. */
uint8_t uart_hw_rx_take(int port);
/* Receive interrupt on or off: off while the ring is full, so a byte left
 * waiting in the port does not interrupt again and again. */
void uart_hw_rx_irq(int port, int on);
/* The port can take a byte to send. */
int  uart_hw_tx_ready(int port);
void uart_hw_tx_put(int port, uint8_t byte);
/* Console output usable from a fault handler, before uart_init() or after a crash. */
void uart_hw_console_polled_init(void);
void uart_rx_isr(int port);

/* ---- Ethernet ---- */
struct netif;
/* Brings the board's Ethernet controller up and fills nif (name, MAC, send,
 * recv). 0 ok; < 0 the controller is absent or did not answer
 * (BOARD_ETH_NAME says which controller). */
int board_eth_init(struct netif *nif);

#endif
