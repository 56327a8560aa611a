#include "systick.h"

#include "board.h"

void sched_tick(void);

static volatile uint32_t millis;
static void check_counter(void);

void systick_init(void)
{
    /* 25 MHz core clock: 25000 cycles per millisecond fits the 24-bit reload. */
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 0x7; /* ENABLE | TICKINT | CLKSOURCE=processor clock */
    check_counter();
}

uint32_t fw_millis(void)
{
    return millis;
}

/* Milliseconds come from a free-running counter where the board has one:
 * mps2-an385's FPGAIO counter, 25 MHz, which QEMU models (Renode's platform
 * has no FPGAIO; it reads 0 there and SysTick's interrupts are counted). A
 * tick that comes late (a busy host) or after a long idle period then still
 * counts every millisecond that passed. */
#define FPGAIO_COUNTER REG32(0x40028018u)
#define CYCLES_PER_MS  (SYSCLK_HZ / 1000u)
/* While the node has nothing to do, SysTick runs with this period instead
 * of 1 ms: an emulator wakes its host thread for every timer interrupt, and
 * a 1 kHz tick costs an idle QEMU node ~4% of a host core (measured; the
 * guest's work per tick barely counts, the wake-up does). Any interrupt
 * ends the wait; timers and sleeping services are up to IDLE_TICK_MS late,
 * never early. Only with the free-running counter, which counts the time. */
#define IDLE_TICK_MS   10u

static int counter_runs;
static uint32_t counter_last, cycles_left;

static void check_counter(void)
{
    uint32_t first = FPGAIO_COUNTER;
    for (volatile int i = 0; i < 100; i++)
        ;
    counter_last = FPGAIO_COUNTER;
    counter_runs = counter_last != first;
}

/* Whole milliseconds since the last call (1 without the counter). */
static uint32_t elapsed_ms(void)
{
    if (!counter_runs)
        return 1;
    uint32_t now = FPGAIO_COUNTER;
    cycles_left += now - counter_last;
    counter_last = now;
    uint32_t ms = cycles_left / CYCLES_PER_MS;
    cycles_left -= ms * CYCLES_PER_MS;
    return ms;
}

void systick_idle(void)
{
    if (counter_runs) {
        SYST_RVR = IDLE_TICK_MS * CYCLES_PER_MS - 1u;
        SYST_CVR = 0; /* reload now: the next tick is IDLE_TICK_MS away */
    }
    __asm volatile("dsb\n wfi" ::: "memory");
    if (counter_runs) {
        SYST_RVR = CYCLES_PER_MS - 1u;
        SYST_CVR = 0; /* the next tick counts what passed meanwhile */
    }
}

void SysTick_Handler(void)
{
    for (uint32_t ms = elapsed_ms(); ms > 0; ms--) {
        millis++;
        sched_tick();
    }
}
