/* nRF52840 DK: the high-frequency crystal for the UARTEs' baud rate, the RNG
 * for entropy; no Ethernet. Register facts: nRF52840 Product Specification
 * v1.7, CLOCK and RNG chapters. */
#include "board.h"

#define CLOCK_TASKS_HFCLKSTART     REG32(CLOCK_BASE + 0x000u)
#define CLOCK_EVENTS_HFCLKSTARTED  REG32(CLOCK_BASE + 0x100u)
#define RNG_TASKS_START            REG32(RNG_BASE + 0x000u)
#define RNG_TASKS_STOP             REG32(RNG_BASE + 0x004u)
#define RNG_EVENTS_VALRDY          REG32(RNG_BASE + 0x100u)
#define RNG_VALUE                  REG32(RNG_BASE + 0x508u)

/* Bounds on waits for the hardware: a model that never sets the event must not hang the boot. */
#define HFCLK_SPINS  100000u
#define RNG_SPINS    10000u

void board_init(void)
{
    CLOCK_EVENTS_HFCLKSTARTED = 0;
    CLOCK_TASKS_HFCLKSTART = 1;
    for (uint32_t i = 0; i < HFCLK_SPINS && !CLOCK_EVENTS_HFCLKSTARTED; i++) {
    }
}

/* Renode delivers every SysTick interrupt, skipping idle time or not. */
uint32_t board_systick_periods(void)
{
    return 1;
}

/* No free-running counter is read here: SysTick keeps its 1 ms period. */
int board_counts_time(void)
{
    return 0;
}

uint32_t board_entropy(void)
{
    uint32_t e = SYST_CVR << 8;
    for (int byte = 0; byte < 4; byte++) {
        RNG_EVENTS_VALRDY = 0;
        RNG_TASKS_START = 1;
        uint32_t i = 0;
        while (!RNG_EVENTS_VALRDY && i < RNG_SPINS)
            i++;
        if (i < RNG_SPINS)
            e ^= (RNG_VALUE & 0xFFu) << (8 * byte);
    }
    RNG_TASKS_STOP = 1;
    return e;
}

int board_eth_init(struct netif *nif)
{
    (void)nif;
    return -1;
}
