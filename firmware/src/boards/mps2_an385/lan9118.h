/* SMSC LAN9118 Ethernet driver (QEMU mps2-an385 model). */
#ifndef LAN9118_H
#define LAN9118_H

#include "net.h"

/* Resets and configures the chip, fills nif's MAC, send and recv.
 * 0 ok, -1 chip not found, -2 chip did not come out of reset. */
int lan9118_init(struct netif *nif);

#endif
