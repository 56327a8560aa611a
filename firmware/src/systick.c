#include "systick.h"

#include "board.h"

void sched_tick(void);

static volatile uint32_t millis;

/* While the node has nothing to do, SysTick runs with this period instead
 * of 1 ms: an emulator wakes its host thread for every timer interrupt, and
 * a 1 kHz tick costs an idle QEMU node ~4% of a host core (measured; the
 * guest's work per tick barely counts, the wake-up does). Any interrupt
 * ends the wait; the tick comes no later than the earliest sleeping
 * service's wake-up (max_ms, from the scheduler), so services wake on time;
 * the main loop's own timers (CoAP, observe) may be up to IDLE_TICK_MS late,
 * never early. Only on boards whose free-running counter tells how many
 * milliseconds a tick stands for (board_counts_time). */
#define IDLE_TICK_MS   10u
#define CYCLES_PER_MS  (SYSCLK_HZ / 1000u)

void systick_init(void)
{
    /* Core clock cycles per millisecond (25000 at 25 MHz, 168000 at 168 MHz) fit the 24-bit reload. */
    SYST_RVR = CYCLES_PER_MS - 1u;
    SYST_CVR = 0;
    SYST_CSR = 0x7; /* ENABLE | TICKINT | CLKSOURCE=processor clock */
}

uint32_t fw_millis(void)
{
    return millis;
}

void systick_idle(uint32_t max_ms)
{
    uint32_t tick_ms = max_ms < IDLE_TICK_MS ? max_ms : IDLE_TICK_MS;
    int long_tick = tick_ms > 1u && board_counts_time();
    if (long_tick) {
        SYST_RVR = tick_ms * CYCLES_PER_MS - 1u;
        SYST_CVR = 0; /* reload now: the next tick is IDLE_TICK_MS away */
    }
    __asm volatile("dsb\n wfi" ::: "memory");
    if (long_tick) {
        SYST_RVR = CYCLES_PER_MS - 1u;
        SYST_CVR = 0; /* the next tick counts what passed meanwhile */
    }
}

void SysTick_Handler(void)
{
    /* Usually one period; more when interrupts were lost or the tick was long (see board.h). */
    for (uint32_t n = board_systick_periods(); n > 0; n--) {
        millis++;
        sched_tick();
    }
}
