#include "systick.h"

#include "board.h"

void sched_tick(void);

static volatile uint32_t millis;

void systick_init(void)
{
    /* Core clock cycles per millisecond (25000 at 25 MHz, 168000 at 168 MHz) fit the 24-bit reload. */
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 0x7; /* ENABLE | TICKINT | CLKSOURCE=processor clock */
}

uint32_t fw_millis(void)
{
    return millis;
}

void SysTick_Handler(void)
{
    /* Usually one period; more when interrupts were lost (see board.h). */
    for (uint32_t n = board_systick_periods(); n > 0; n--) {
        millis++;
        sched_tick();
    }
}
