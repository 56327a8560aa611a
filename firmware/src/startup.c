/* Reset and the vector table (the board names its interrupt handlers); picolibc TLS and stdio setup. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "uart.h"

extern uint32_t __stack_top[];
extern uint8_t __data_start[], __data_end[], __data_source[];
extern uint8_t __bss_start[], __bss_end[], __bss2_start[], __bss2_end[];
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
#define DECLARE_BOARD_HANDLER(irq, name) WEAK_HANDLER(name);
BOARD_IRQS(DECLARE_BOARD_HANDLER)

/* Until the service runtime is linked in, module wrappers that read the
 * pointer at 0x28 get a function that answers "no module here". */
__attribute__((weak)) uint32_t rt_lot_base_for_pc(uint32_t pc)
{
    (void)pc;
    return 0;
}

typedef void (*vector_t)(void);

/* Every external interrupt goes to Default_Handler unless the board names a
 * handler for it; the board's entries override the range on purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
#define BOARD_VECTOR(irq, name) [16 + (irq)] = name,
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
    [16 ... 16 + IRQ_COUNT - 1] = Default_Handler,
    BOARD_IRQS(BOARD_VECTOR)
};
#pragma GCC diagnostic pop

void Reset_Handler(void)
{
#ifdef __ARM_FP
    /* CP10/CP11 full access before any floating-point instruction runs
     * (lazy stacking, the reset default of FPCCR, stays on). */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    SCB_VTOR = (uint32_t)(uintptr_t)vector_table;
    memcpy(__data_start, __data_source, (size_t)(__data_end - __data_start));
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    memset(__bss2_start, 0, (size_t)(__bss2_end - __bss2_start));
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
