/* mps2-an385: nothing to set up before the drivers; the LAN9118 is the Ethernet. */
#include "board.h"

#include "lan9118.h"
#include "systick.h"

/* FPGAIO's free-running 25 MHz counter (QEMU models it; Renode's platform
 * has no FPGAIO, where it reads 0 and SysTick's interrupts are counted). */
#define FPGAIO_COUNTER   REG32(FPGAIO_BASE + 0x18u)
#define CYCLES_PER_MS    (SYSCLK_HZ / 1000u)

static int counter_runs;
static uint32_t counter_last, cycles_left;

void board_init(void)
{
    uint32_t first = FPGAIO_COUNTER;
    for (volatile int i = 0; i < 100; i++)
        ;
    counter_last = FPGAIO_COUNTER;
    counter_runs = counter_last != first;
}

int board_counts_time(void)
{
    return counter_runs;
}

uint32_t board_systick_periods(void)
{
    if (!counter_runs)
        return 1;
    uint32_t now = FPGAIO_COUNTER;
    cycles_left += now - counter_last;
    counter_last = now;
    uint32_t periods = cycles_left / CYCLES_PER_MS;
    cycles_left -= periods * CYCLES_PER_MS;
    return periods;
}

uint32_t board_entropy(void)
{
    /* mps2-an385 has no RNG: the SysTick phase and the ticks since boot differ
     * between power-ups on hardware and under QEMU, not under virtual time */
    return (SYST_CVR << 8) ^ (fw_millis() * 2654435761u) ^ SYST_RVR;
}

int board_eth_init(struct netif *nif)
{
    return lan9118_init(nif);
}
