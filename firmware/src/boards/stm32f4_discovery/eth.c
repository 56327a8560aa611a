/* The STM32F407's Ethernet MAC with its DMA (normal descriptors, chained),
 * RMII to the base board's LAN8720 PHY at MDIO address 0. Register and
 * descriptor facts: RM0090, "Ethernet (ETH): media access control (MAC)
 * with DMA controller". Frames are polled from the main loop; the receive
 * interrupt only wakes it. */
#include <string.h>

#include "board.h"
#include "net.h"

#define ETH(off)         REG32(ETH_BASE + (off))
#define MACCR            ETH(0x0000u)
#define MACFFR           ETH(0x0004u)
#define MACMIIAR         ETH(0x0010u)
#define MACMIIDR         ETH(0x0014u)
#define MACA0HR          ETH(0x0040u)
#define MACA0LR          ETH(0x0044u)
#define DMABMR           ETH(0x1000u)
#define DMATPDR          ETH(0x1004u)
#define DMARPDR          ETH(0x1008u)
#define DMARDLAR         ETH(0x100Cu)
#define DMATDLAR         ETH(0x1010u)
#define DMASR            ETH(0x1014u)
#define DMAOMR           ETH(0x1018u)
#define DMAIER           ETH(0x101Cu)

#define MACCR_RE         (1u << 2)
#define MACCR_TE         (1u << 3)
#define MACCR_DM         (1u << 11)
#define MACCR_FES        (1u << 14)
#define MIIAR_MB         (1u << 0)
#define MIIAR_MW         (1u << 1)
#define MIIAR_CR_60_100  (0u << 2)   /* MDC = HCLK / 42 for HCLK 60-100 MHz */
#define DMABMR_SR        (1u << 0)
#define DMABMR_PBL_32    (32u << 8)
#define DMABMR_AAB       (1u << 25)
#define DMASR_TS         (1u << 0)
#define DMASR_TBUS       (1u << 2)
#define DMASR_RS         (1u << 6)
#define DMASR_RBUS       (1u << 7)
#define DMASR_NIS        (1u << 16)
#define DMASR_AIS        (1u << 15)
#define DMAOMR_SR        (1u << 1)
#define DMAOMR_ST        (1u << 13)
#define DMAOMR_FTF       (1u << 20)
#define DMAOMR_TSF       (1u << 21)
#define DMAOMR_RSF       (1u << 25)
#define DMAIER_RIE       (1u << 6)
#define DMAIER_NISE      (1u << 16)

/* Descriptor bits */
#define DES0_OWN         (1u << 31)
#define TDES0_IC         (1u << 30)
#define TDES0_LS         (1u << 29)
#define TDES0_FS         (1u << 28)
#define TDES0_TCH        (1u << 20)
#define RDES0_FL(d)      (((d) >> 16) & 0x3FFFu)
#define RDES0_ES         (1u << 15)
#define RDES0_FS         (1u << 9)
#define RDES0_LS         (1u << 8)
#define RDES1_RCH        (1u << 14)

/* RCC, SYSCFG */
#define AHB1ENR_ETH      ((1u << 25) | (1u << 26) | (1u << 27))  /* MAC, MAC TX, MAC RX */
#define AHB1RSTR_ETHMAC  (1u << 25)
#define APB2ENR_SYSCFG   (1u << 14)
#define SYSCFG_PMC       REG32(SYSCFG_BASE + 0x04u)
#define PMC_MII_RMII_SEL (1u << 23)

/* PHY (IEEE 802.3 clause 22 registers) */
#define PHY_ADDRESS      0u
#define PHY_BCR          0u
#define PHY_BSR          1u
#define PHY_ID1          2u
#define PHY_ANAR         4u
#define PHY_ANLPAR       5u
#define BCR_ANEN         (1u << 12)
#define BCR_ANRESTART    (1u << 9)
#define BSR_LINK         (1u << 2)
#define AN_100FD         (1u << 8)
#define AN_100HD         (1u << 7)
#define AN_10FD          (1u << 6)

#define RX_BUFFERS       4u
#define TX_BUFFERS       2u
#define BUFFER_BYTES     1536u   /* a multiple of 4 above the largest frame with its CRC */
#define SPIN_LIMIT       200000u

struct descriptor {
    volatile uint32_t des0, des1, des2, des3;
};

/* DMA memory: in SRAM (the linker keeps .bss there; CCM is out of the DMA's reach). */
static struct descriptor rx_ring[RX_BUFFERS] __attribute__((aligned(8)));
static struct descriptor tx_ring[TX_BUFFERS] __attribute__((aligned(8)));
static uint8_t rx_buffers[RX_BUFFERS][BUFFER_BYTES] __attribute__((aligned(4)));
static uint8_t tx_buffers[TX_BUFFERS][BUFFER_BYTES] __attribute__((aligned(4)));
static uint32_t rx_next, tx_next;

/* A locally administered address in ST's OUI (00:80:E1). */
static const uint8_t default_mac[6] = { 0x02, 0x80, 0xE1, 0x00, 0x00, 0x01 };

static int mdio_wait(void)
{
    for (uint32_t i = 0; i < SPIN_LIMIT; i++)
        if (!(MACMIIAR & MIIAR_MB))
            return 0;
    return -1;
}

static int phy_read(uint32_t reg, uint16_t *value)
{
    MACMIIAR = (PHY_ADDRESS << 11) | (reg << 6) | MIIAR_CR_60_100 | MIIAR_MB;
    if (mdio_wait() != 0)
        return -1;
    *value = (uint16_t)MACMIIDR;
    return 0;
}

static int phy_write(uint32_t reg, uint16_t value)
{
    MACMIIDR = value;
    MACMIIAR = (PHY_ADDRESS << 11) | (reg << 6) | MIIAR_CR_60_100 | MIIAR_MW | MIIAR_MB;
    return mdio_wait();
}

static void rings_init(void)
{
    for (uint32_t i = 0; i < RX_BUFFERS; i++) {
        rx_ring[i].des1 = RDES1_RCH | BUFFER_BYTES;
        rx_ring[i].des2 = (uint32_t)rx_buffers[i];
        rx_ring[i].des3 = (uint32_t)&rx_ring[(i + 1u) % RX_BUFFERS];
        rx_ring[i].des0 = DES0_OWN;
    }
    for (uint32_t i = 0; i < TX_BUFFERS; i++) {
        tx_ring[i].des0 = TDES0_TCH;
        tx_ring[i].des1 = 0;
        tx_ring[i].des2 = (uint32_t)tx_buffers[i];
        tx_ring[i].des3 = (uint32_t)&tx_ring[(i + 1u) % TX_BUFFERS];
    }
    rx_next = tx_next = 0;
    DMARDLAR = (uint32_t)rx_ring;
    DMATDLAR = (uint32_t)tx_ring;
}

static int eth_send(struct netif *nif, const uint8_t *frame, uint16_t len)
{
    if (len > NET_ETH_FRAME_MAX)
        return -1;
    struct descriptor *d = &tx_ring[tx_next];
    uint32_t spins = 0;
    while (d->des0 & DES0_OWN) {
        if (++spins > SPIN_LIMIT)
            return -1; /* the DMA has not sent the frame before this one */
    }
    memcpy(tx_buffers[tx_next], frame, len);
    d->des1 = len;
    /* The MAC pads short frames and appends the CRC. */
    d->des0 = DES0_OWN | TDES0_FS | TDES0_LS | TDES0_TCH;
    tx_next = (tx_next + 1u) % TX_BUFFERS;
    __asm__ volatile("dsb" ::: "memory");
    DMASR = DMASR_TBUS;
    DMATPDR = 0; /* resume a suspended transmit process */
    (void)nif;
    return 0;
}

static int eth_recv(struct netif *nif, uint8_t *buf, uint16_t cap)
{
    for (;;) {
        struct descriptor *d = &rx_ring[rx_next];
        uint32_t status = d->des0;
        if (status & DES0_OWN)
            return 0;
        uint32_t len = RDES0_FL(status);
        /* FL counts the 4-byte CRC on the wire; an emulated MAC may hand frames
         * over without it. The IP layer trusts its own length, so the CRC
         * is dropped only when the frame would not fit otherwise. */
        if (len > cap && len >= 4u && len - 4u <= cap)
            len -= 4u;
        int keep = (status & (RDES0_ES | RDES0_FS | RDES0_LS)) == (RDES0_FS | RDES0_LS) && len > 0u && len <= cap;
        if (keep)
            memcpy(buf, rx_buffers[rx_next], len);
        else
            nif->rx_dropped++;
        d->des0 = DES0_OWN;
        rx_next = (rx_next + 1u) % RX_BUFFERS;
        __asm__ volatile("dsb" ::: "memory");
        if (DMASR & DMASR_RBUS) {
            DMASR = DMASR_RBUS;
            DMARPDR = 0; /* a buffer is free again: resume reception */
        }
        if (keep)
            return (int)len;
    }
}

void ETH_IRQHandler(void)
{
    /* Only wakes the main loop; net_poll() takes the frames. */
    DMASR = DMASR_RS | DMASR_TS | DMASR_NIS | DMASR_AIS;
}

int board_eth_init(struct netif *nif)
{
    /* RMII must be chosen while the MAC is held in reset. */
    RCC_APB2ENR |= APB2ENR_SYSCFG;
    RCC_AHB1RSTR |= AHB1RSTR_ETHMAC;
    SYSCFG_PMC |= PMC_MII_RMII_SEL;
    /* RMII pins, AF11: PA1 REF_CLK, PA2 MDIO, PA7 CRS_DV, PB11 TX_EN,
     * PB12 TXD0, PB13 TXD1, PC1 MDC, PC4 RXD0, PC5 RXD1. */
    static const struct { uint32_t gpio; int pin; } pins[] = {
        { GPIOA_BASE, 1 }, { GPIOA_BASE, 2 }, { GPIOA_BASE, 7 }, { GPIOB_BASE, 11 }, { GPIOB_BASE, 12 },
        { GPIOB_BASE, 13 }, { GPIOC_BASE, 1 }, { GPIOC_BASE, 4 }, { GPIOC_BASE, 5 },
    };
    for (uint32_t i = 0; i < sizeof pins / sizeof pins[0]; i++)
        gpio_alternate(pins[i].gpio, pins[i].pin, 11);
    RCC_AHB1ENR |= AHB1ENR_ETH;
    RCC_AHB1RSTR &= ~AHB1RSTR_ETHMAC;

    DMABMR |= DMABMR_SR;
    uint32_t spins = 0;
    while (DMABMR & DMABMR_SR) {
        if (++spins > SPIN_LIMIT)
            return -2; /* the DMA did not come out of reset (no RMII reference clock?) */
    }

    uint16_t id = 0, anar = 0, anlpar = 0, bsr = 0;
    if (phy_read(PHY_ID1, &id) != 0 || id == 0x0000u || id == 0xFFFFu)
        return -3; /* no PHY answers at address 0: a Discovery kit without the base board */
    (void)phy_write(PHY_BCR, BCR_ANEN | BCR_ANRESTART);
    for (spins = 0; spins < 1000u; spins++) {
        if (phy_read(PHY_BSR, &bsr) != 0 || (bsr & BSR_LINK))
            break;
    }
    uint32_t maccr = 0;
    if (phy_read(PHY_ANAR, &anar) == 0 && phy_read(PHY_ANLPAR, &anlpar) == 0) {
        uint16_t common = anar & anlpar;
        if (common & AN_100FD)
            maccr = MACCR_FES | MACCR_DM;
        else if (common & AN_100HD)
            maccr = MACCR_FES;
        else if (common & AN_10FD)
            maccr = MACCR_DM;
    }

    memcpy(nif->mac, default_mac, sizeof default_mac);
    MACA0HR = (uint32_t)nif->mac[4] | ((uint32_t)nif->mac[5] << 8);
    MACA0LR = (uint32_t)nif->mac[0] | ((uint32_t)nif->mac[1] << 8) | ((uint32_t)nif->mac[2] << 16) |
              ((uint32_t)nif->mac[3] << 24);
    MACFFR = 0; /* our address, broadcast and multicast */

    rings_init();
    DMABMR = DMABMR_AAB | DMABMR_PBL_32;
    DMAOMR = DMAOMR_TSF | DMAOMR_RSF;
    MACCR = maccr | MACCR_TE;
    DMAOMR |= DMAOMR_FTF;
    MACCR |= MACCR_RE;
    DMASR = 0xFFFFFFFFu;
    DMAIER = DMAIER_NISE | DMAIER_RIE;
    nvic_clear_pending(IRQ_ETH);
    nvic_enable(IRQ_ETH);
    DMAOMR |= DMAOMR_ST | DMAOMR_SR;

    nif->driver_name = BOARD_ETH_NAME;
    nif->link = NETIF_LINK_ETHERNET;
    nif->send = eth_send;
    nif->recv = eth_recv;
    nif->driver = NULL;
    return 0;
}
