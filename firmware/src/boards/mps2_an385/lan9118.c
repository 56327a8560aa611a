/* Follows the measured recipe in /work/shared/docs/mps2-an385.md. */
#include "lan9118.h"

#include <string.h>

#include "board.h"

#define LAN(off)            REG32(LAN9118_BASE + (off))
#define RX_DATA_FIFO        LAN(0x00)
#define TX_DATA_FIFO        LAN(0x20)
#define RX_STATUS_FIFO      LAN(0x40)
#define TX_STATUS_FIFO      LAN(0x48)
#define ID_REV              LAN(0x50)
#define IRQ_CFG             LAN(0x54)
#define INT_STS             LAN(0x58)
#define INT_EN              LAN(0x5C)
#define BYTE_TEST           LAN(0x64)
#define FIFO_INT            LAN(0x68)
#define RX_CFG              LAN(0x6C)
#define TX_CFG              LAN(0x70)
#define HW_CFG              LAN(0x74)
#define RX_FIFO_INF         LAN(0x7C)
#define TX_FIFO_INF         LAN(0x80)
#define PMT_CTRL            LAN(0x84)
#define MAC_CSR_CMD         LAN(0xA4)
#define MAC_CSR_DATA        LAN(0xA8)

#define BYTE_TEST_MAGIC     0x87654321u
#define HW_CFG_SRST         (1u << 0)
#define PMT_CTRL_READY      (1u << 0)
#define TX_CFG_TX_ON        (1u << 1)
#define INT_RSFL            (1u << 3)
#define IRQ_CFG_ON          0x111u  /* IRQ_EN | IRQ_POL high | IRQ_TYPE push-pull */
#define RX_STS_ERROR        (1u << 15)
#define TX_STS_ERROR        (1u << 15)
#define TX_CMD_A_FIRST      (1u << 13)
#define TX_CMD_A_LAST       (1u << 12)

#define MAC_CR              1u
#define MAC_ADDRH           2u
#define MAC_ADDRL           3u
#define MAC_CR_ON           0x0010000Cu /* FDPX | TXEN | RXEN, filter on our MAC + broadcast */

#define ETH_MIN_FRAME       60u  /* without CRC; the model does not pad */
#define SPIN_LIMIT          100000u

static uint32_t mac_csr_read(uint32_t index)
{
    MAC_CSR_CMD = 0xC0000000u | index; /* BUSY | READ */
    return MAC_CSR_DATA;
}

static void mac_csr_write(uint32_t index, uint32_t value)
{
    MAC_CSR_DATA = value;
    MAC_CSR_CMD = 0x80000000u | index;
}

static void drain_tx_status(struct netif *nif)
{
    while ((TX_FIFO_INF >> 16) & 0xFFu) {
        if (TX_STATUS_FIFO & TX_STS_ERROR)
            nif->tx_errors++;
    }
}

static int lan9118_send(struct netif *nif, const uint8_t *frame, uint16_t len)
{
    if (len > NET_ETH_FRAME_MAX)
        return -1;
    uint32_t wire_len = len < ETH_MIN_FRAME ? ETH_MIN_FRAME : len;
    uint32_t words = (wire_len + 3u) / 4u;

    /* Data words plus the two command words must fit the TX data FIFO. */
    uint32_t spins = 0;
    while ((TX_FIFO_INF & 0xFFFFu) < words * 4u + 8u) {
        drain_tx_status(nif);
        if (++spins > SPIN_LIMIT)
            return -1;
    }

    TX_DATA_FIFO = TX_CMD_A_FIRST | TX_CMD_A_LAST | wire_len;
    TX_DATA_FIFO = (1u << 16) | wire_len; /* tag 1 */
    for (uint32_t i = 0; i < words; i++) {
        uint8_t b[4] = { 0, 0, 0, 0 };
        for (uint32_t k = 0; k < 4u; k++) {
            uint32_t at = i * 4u + k;
            if (at < len)
                b[k] = frame[at];
        }
        TX_DATA_FIFO = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    }
    drain_tx_status(nif);
    return 0;
}

static int lan9118_recv(struct netif *nif, uint8_t *buf, uint16_t cap)
{
    while ((RX_FIFO_INF >> 16) & 0xFFu) {
        uint32_t status = RX_STATUS_FIFO;
        uint32_t wire_len = (status >> 16) & 0x3FFFu; /* includes the 4-byte CRC */
        uint32_t words = (wire_len + 3u) / 4u;
        uint32_t len = wire_len >= 4u ? wire_len - 4u : 0u;
        /* The words must leave the FIFO even when the frame is dropped. */
        int keep = !(status & RX_STS_ERROR) && len > 0u && len <= cap;
        for (uint32_t i = 0; i < words; i++) {
            uint32_t w = RX_DATA_FIFO;
            if (!keep)
                continue;
            for (uint32_t k = 0; k < 4u; k++) {
                uint32_t at = i * 4u + k;
                if (at < len)
                    buf[at] = (uint8_t)(w >> (8u * k));
            }
        }
        if (keep)
            return (int)len;
        nif->rx_dropped++;
    }
    return 0;
}

void ETH_IRQHandler(void)
{
    /* Only wakes the main loop; net_poll() drains the whole RX status FIFO. */
    INT_STS = INT_STS;
}

int lan9118_init(struct netif *nif)
{
    if (BYTE_TEST != BYTE_TEST_MAGIC || (ID_REV >> 16) != 0x0118u)
        return -1;
    HW_CFG = HW_CFG_SRST;
    uint32_t spins = 0;
    while ((HW_CFG & HW_CFG_SRST) || !(PMT_CTRL & PMT_CTRL_READY)) {
        if (++spins > SPIN_LIMIT)
            return -2;
    }

    /* The model loads the -nic MAC at reset. */
    uint32_t lo = mac_csr_read(MAC_ADDRL);
    uint32_t hi = mac_csr_read(MAC_ADDRH);
    for (int i = 0; i < 4; i++)
        nif->mac[i] = (uint8_t)(lo >> (8 * i));
    nif->mac[4] = (uint8_t)hi;
    nif->mac[5] = (uint8_t)(hi >> 8);

    mac_csr_write(MAC_CR, MAC_CR_ON);
    FIFO_INT = 0x48000000u;
    RX_CFG = 0;
    TX_CFG = TX_CFG_TX_ON;
    INT_STS = 0xFFFFFFFFu;
    IRQ_CFG = IRQ_CFG_ON;
    INT_EN = INT_RSFL;
    /* The line is pending from reset (it idles active-low until IRQ_CFG is set). */
    nvic_clear_pending(IRQ_ETHERNET);
    nvic_enable(IRQ_ETHERNET);

    nif->driver_name = "LAN9118";
    nif->link = NETIF_LINK_ETHERNET;
    nif->send = lan9118_send;
    nif->recv = lan9118_recv;
    nif->driver = NULL;
    return 0;
}
