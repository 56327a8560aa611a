/* SLIP framing on the SLIP UART (UART1 on mps2-an385). Runs in the main loop only (net_service), so no locking. */
#include "slip.h"

#include <string.h>

#include "board.h"
#include "uart.h"

#define SLIP_END      0xC0u
#define SLIP_ESC      0xDBu
#define SLIP_ESC_END  0xDCu
#define SLIP_ESC_ESC  0xDDu

/* Why the frame being received will be dropped at its END. */
enum rx_fault { RX_OK, RX_BAD_ESCAPE, RX_OVERSIZE };

static uint8_t rx_buf[NET_MTU];
static uint16_t rx_len;
static uint8_t rx_escaped;
static enum rx_fault rx_fault;
/* Worst case every byte escaped, plus the END on both sides. */
static uint8_t tx_buf[2u * NET_MTU + 2u];
static struct slip_stats stats;

static void rx_restart(void)
{
    rx_len = 0;
    rx_escaped = 0;
    rx_fault = RX_OK;
}

/* A frame ends at END. Broken frames are skipped up to the next END, so the
 * decoder needs no resynchronisation of its own: line noise costs at most
 * the frame it lands in. */
static int slip_recv(struct netif *nif, uint8_t *buf, uint16_t cap)
{
    int c;
    while ((c = uart1_getc()) >= 0) {
        uint8_t byte = (uint8_t)c;
        if (byte == SLIP_END) {
            enum rx_fault fault = rx_escaped ? RX_BAD_ESCAPE : rx_fault;
            uint16_t len = rx_len;
            rx_restart();
            if (fault == RX_BAD_ESCAPE)
                stats.bad_escape++;
            else if (fault == RX_OVERSIZE)
                stats.oversize++;
            if (fault != RX_OK || len > cap) {
                nif->rx_dropped++;
                continue;
            }
            if (len == 0)
                continue; /* END END: the sender flushing the line */
            memcpy(buf, rx_buf, len);
            stats.frames_in++;
            return len;
        }
        if (rx_fault != RX_OK)
            continue;
        if (rx_escaped) {
            rx_escaped = 0;
            if (byte == SLIP_ESC_END) {
                byte = SLIP_END;
            } else if (byte == SLIP_ESC_ESC) {
                byte = SLIP_ESC;
            } else {
                rx_fault = RX_BAD_ESCAPE;
                continue;
            }
        } else if (byte == SLIP_ESC) {
            rx_escaped = 1;
            continue;
        }
        if (rx_len >= sizeof rx_buf) {
            rx_fault = RX_OVERSIZE;
            continue;
        }
        rx_buf[rx_len++] = byte;
    }
    return 0;
}

static int slip_send(struct netif *nif, const uint8_t *packet, uint16_t len)
{
    (void)nif;
    if (len > NET_MTU)
        return -1;
    uint32_t n = 0;
    tx_buf[n++] = SLIP_END; /* ends whatever noise the peer has received before */
    for (uint16_t i = 0; i < len; i++) {
        uint8_t byte = packet[i];
        if (byte == SLIP_END) {
            tx_buf[n++] = SLIP_ESC;
            tx_buf[n++] = SLIP_ESC_END;
        } else if (byte == SLIP_ESC) {
            tx_buf[n++] = SLIP_ESC;
            tx_buf[n++] = SLIP_ESC_ESC;
        } else {
            tx_buf[n++] = byte;
        }
    }
    tx_buf[n++] = SLIP_END;
    if (uart1_write(tx_buf, n) != 0)
        return -1;
    stats.frames_out++;
    return 0;
}

void slip_reset(void)
{
    uart1_flush_rx();
    rx_restart();
}

void slip_get_stats(struct slip_stats *out)
{
    *out = stats;
    out->line_pauses = uart1_rx_pauses();
}

int slip_init(struct netif *nif)
{
    uart1_init();
    rx_restart();
    nif->driver_name = BOARD_SLIP_NAME;
    nif->link = NETIF_LINK_IP;
    memset(nif->mac, 0, sizeof nif->mac);
    nif->send = slip_send;
    nif->recv = slip_recv;
    nif->driver = NULL;
    return 0;
}
