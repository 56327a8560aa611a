#include "systick.h"

#include "board.h"

void sched_tick(void);

static volatile uint32_t millis;

void systick_init(void)
{
    /* 25 MHz core clock: 25000 cycles per millisecond fits the 24-bit reload. */
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
    millis++;
    sched_tick();
}
