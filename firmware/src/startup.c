/* Reset and vector table for mps2-an385; picolibc TLS and stdio setup. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "systick.h"
#include "uart.h"

extern uint32_t __stack_top[];
extern uint8_t __data_start[], __data_end[], __data_source[];
extern uint8_t __bss_start[], __bss_end[];
extern uint8_t __tls_base[];

void _init_tls(void *tls);
void _set_tls(void *tls);
int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void);

#define WEAK_HANDLER(name) void name(void) __attribute__((weak, alias("Default_Handler")))
WEAK_HANDLER(NMI_Handler);
WEAK_HANDLER(HardFault_Handler);
WEAK_HANDLER(MemManage_Handler);
WEAK_HANDLER(BusFault_Handler);
WEAK_HANDLER(UsageFault_Handler);
WEAK_HANDLER(SVC_Handler);
WEAK_HANDLER(DebugMon_Handler);
WEAK_HANDLER(PendSV_Handler);
WEAK_HANDLER(SysTick_Handler);
WEAK_HANDLER(UART0_RX_IRQHandler);
WEAK_HANDLER(UART1_RX_IRQHandler);
WEAK_HANDLER(UART2_RX_IRQHandler);
WEAK_HANDLER(ETH_IRQHandler);

/* Until the service runtime is linked in, module wrappers that read the
 * pointer at 0x28 get a function that answers "no module here". */
__attribute__((weak)) uint32_t rt_lot_base_for_pc(uint32_t pc)
{
    (void)pc;
    return 0;
}

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used))
const vector_t vector_table[16 + IRQ_COUNT] = {
    [0] = (vector_t)(uintptr_t)__stack_top,
    [1] = Reset_Handler,
    [2] = NMI_Handler,
    [3] = HardFault_Handler,
    [4] = MemManage_Handler,
    [5] = BusFault_Handler,
    [6] = UsageFault_Handler,
    /* Offset 0x28 (reserved on ARMv7-M): udynlink export wrappers load the
     * LOT-base lookup from here, so it must hold a Thumb function pointer. */
    [10] = (vector_t)rt_lot_base_for_pc,
    [11] = SVC_Handler,
    [12] = DebugMon_Handler,
    [14] = PendSV_Handler,
    [15] = SysTick_Handler,
    [16 + IRQ_UART0_RX] = UART0_RX_IRQHandler,
    [16 + IRQ_UART1_RX] = UART1_RX_IRQHandler,
    [16 + IRQ_UART2_RX] = UART2_RX_IRQHandler,
    [16 + IRQ_ETHERNET] = ETH_IRQHandler,
    [16 + 1] = Default_Handler, [16 + 3] = Default_Handler, [16 + 5] = Default_Handler,
    [16 + 6] = Default_Handler, [16 + 7] = Default_Handler, [16 + 8] = Default_Handler,
    [16 + 9] = Default_Handler, [16 + 10] = Default_Handler, [16 + 11] = Default_Handler,
    [16 + 12] = Default_Handler, [16 + 14] = Default_Handler, [16 + 15] = Default_Handler,
    [16 + 16] = Default_Handler, [16 + 17] = Default_Handler, [16 + 18] = Default_Handler,
    [16 + 19] = Default_Handler, [16 + 20] = Default_Handler, [16 + 21] = Default_Handler,
    [16 + 22] = Default_Handler, [16 + 23] = Default_Handler, [16 + 24] = Default_Handler,
    [16 + 25] = Default_Handler, [16 + 26] = Default_Handler, [16 + 27] = Default_Handler,
    [16 + 28] = Default_Handler, [16 + 29] = Default_Handler, [16 + 30] = Default_Handler,
    [16 + 31] = Default_Handler,
};

void Reset_Handler(void)
{
    SCB_VTOR = (uint32_t)(uintptr_t)vector_table;
    memcpy(__data_start, __data_source, (size_t)(__data_end - __data_start));
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    _init_tls(__tls_base);
    _set_tls(__tls_base);
    main();
    board_reset();
}

/* An exception nobody claimed: say which one on the console, then reset
 * (QEMU -no-reboot exits, so the harness sees it instead of a silent hang). */
void Default_Handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    uart_puts_polled("\r\n*** FATAL: unhandled exception ");
    char num[4] = { (char)('0' + (ipsr & 0x1ff) / 100 % 10), (char)('0' + (ipsr & 0x1ff) / 10 % 10),
                    (char)('0' + (ipsr & 0x1ff) % 10), 0 };
    uart_puts_polled(num);
    uart_puts_polled(" ***\r\n");
    board_reset();
}

uint32_t board_entropy(void)
{
    /* mps2-an385 has no RNG: the SysTick phase and the ticks since boot differ
     * between power-ups on hardware and under QEMU, not under virtual time */
    return (SYST_CVR << 8) ^ (fw_millis() * 2654435761u) ^ SYST_RVR;
}

void board_reset(void)
{
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
        __asm__ volatile("wfi");
    }
}

/* picolibc stdio: stdout/stderr go to the UART0 console with CRLF line ends. */
static int console_putc(char c, FILE *f)
{
    (void)f;
    if (c == '\n')
        uart_putc('\r');
    uart_putc(c);
    return (unsigned char)c;
}

static FILE console_stream = FDEV_SETUP_STREAM(console_putc, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdin = &console_stream;
FILE *const stdout = &console_stream;
FILE *const stderr = &console_stream;
