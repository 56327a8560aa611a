/* mps2-an385: nothing to set up before the drivers; the LAN9118 is the Ethernet. */
#include "board.h"

#include "lan9118.h"

void board_init(void)
{
}

/* No RNG on this board: the sub-millisecond phase of the tick. */
uint32_t board_entropy(void)
{
    return SYST_CVR << 8;
}

int board_eth_init(struct netif *nif)
{
    return lan9118_init(nif);
}
