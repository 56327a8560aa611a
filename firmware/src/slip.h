/* SLIP (RFC 1055) network interface on UART1: bare IPv4 packets, byte-stuffed. */
#ifndef SLIP_H
#define SLIP_H

#include <stdint.h>

#include "net.h"

/* Default addressing of the point-to-point link: the harness's SLIP bridge
 * answers as the peer and maps it to the real gateway on the host. */
#define SLIP_DEFAULT_IP       "192.0.2.2"
#define SLIP_DEFAULT_NETMASK  "255.255.255.0"
#define SLIP_DEFAULT_PEER     "192.0.2.1"

struct slip_stats {
    uint32_t frames_in;    /* well-formed frames handed to IP */
    uint32_t frames_out;
    uint32_t bad_escape;   /* ESC followed by something other than ESC_END/ESC_ESC */
    uint32_t oversize;     /* more than NET_MTU bytes before END */
    uint32_t line_pauses;  /* times UART1's receive ring filled up and the line was held */
};

/* Sets up UART1 and fills nif (link type, send/recv). 0 ok. */
int slip_init(struct netif *nif);
/* Forgets a half-received frame and the bytes waiting on the line. */
void slip_reset(void);
void slip_get_stats(struct slip_stats *out);

#endif
