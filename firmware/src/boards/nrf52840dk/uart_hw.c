/* The nRF52840's UARTEs (UART with EasyDMA): UARTE0 is the console (the
 * DK's J-Link VCOM: TXD P0.06, RXD P0.08), UARTE1 the SLIP line (TXD P1.02,
 * RXD P1.01). Register facts: nRF52840 Product Specification v1.7, UARTE.
 *
 * EasyDMA moves bytes between the port and RAM: each port receives into a
 * one-byte buffer (RXD.MAXCNT = 1), so every byte ends a reception (ENDRX)
 * and the receiver holds the next one until it is armed again (see
 * uart_hw_rx_take). Sending is one byte per transfer from a RAM buffer
 * (EasyDMA cannot read flash). One interrupt per byte is plenty for the
 * emulated board; on the silicon a faster line would want the ENDRX_STARTRX
 * shortcut and two buffers. */
#include "board.h"

#define UARTE(b, off)       REG32((b) + (off))
#define TASKS_STARTRX(b)    UARTE(b, 0x000u)
#define TASKS_STARTTX(b)    UARTE(b, 0x008u)
#define EVENTS_ENDRX(b)     UARTE(b, 0x110u)
#define EVENTS_ENDTX(b)     UARTE(b, 0x120u)
#define EVENTS_ERROR(b)     UARTE(b, 0x124u)
#define INTENSET(b)         UARTE(b, 0x304u)
#define INTENCLR(b)         UARTE(b, 0x308u)
#define ERRORSRC(b)         UARTE(b, 0x480u)
#define ENABLE(b)           UARTE(b, 0x500u)
#define PSEL_RTS(b)         UARTE(b, 0x508u)
#define PSEL_TXD(b)         UARTE(b, 0x50Cu)
#define PSEL_CTS(b)         UARTE(b, 0x510u)
#define PSEL_RXD(b)         UARTE(b, 0x514u)
#define BAUDRATE(b)         UARTE(b, 0x524u)
#define RXD_PTR(b)          UARTE(b, 0x534u)
#define RXD_MAXCNT(b)       UARTE(b, 0x538u)
#define TXD_PTR(b)          UARTE(b, 0x544u)
#define TXD_MAXCNT(b)       UARTE(b, 0x548u)
#define CONFIG(b)           UARTE(b, 0x56Cu)

#define ENABLE_UARTE        8u
#define BAUD_115200         0x01D7E000u
#define INT_ENDRX           (1u << 4)
#define PSEL_DISCONNECTED   0xFFFFFFFFu
#define PSEL(port, pin)     (((uint32_t)(port) << 5) | (uint32_t)(pin)) /* CONNECT (bit 31) = 0 */

struct uarte {
    uint32_t base;
    int irq;
    uint32_t txd, rxd;
    volatile uint8_t rx_byte; /* EasyDMA target of the receiver */
    volatile uint8_t tx_byte; /* EasyDMA source of the transmitter */
    volatile uint8_t tx_busy; /* a transfer was started and ENDTX not yet seen */
};

static struct uarte ports[2] = {
    { .base = UARTE0_BASE, .irq = IRQ_UARTE0, .txd = PSEL(0, 6), .rxd = PSEL(0, 8) },
    { .base = UARTE1_BASE, .irq = IRQ_UARTE1, .txd = PSEL(1, 2), .rxd = PSEL(1, 1) },
};

static void setup(struct uarte *u)
{
    uint32_t b = u->base;
    ENABLE(b) = 0;
    PSEL_TXD(b) = u->txd;
    PSEL_RXD(b) = u->rxd;
    PSEL_RTS(b) = PSEL_DISCONNECTED;
    PSEL_CTS(b) = PSEL_DISCONNECTED;
    BAUDRATE(b) = BAUD_115200;
    CONFIG(b) = 0; /* 8N1, no flow control */
    ENABLE(b) = ENABLE_UARTE;
    u->tx_busy = 0;
}

void uart_hw_init(int port)
{
    struct uarte *u = &ports[port];
    uint32_t b = u->base;
    setup(u);
    RXD_PTR(b) = (uint32_t)&u->rx_byte;
    RXD_MAXCNT(b) = 1;
    EVENTS_ENDRX(b) = 0;
    EVENTS_ERROR(b) = 0;
    INTENSET(b) = INT_ENDRX;
    nvic_clear_pending(u->irq);
    nvic_enable(u->irq);
    TASKS_STARTRX(b) = 1;
}

int uart_hw_rx_ready(int port)
{
    return EVENTS_ENDRX(ports[port].base) != 0;
}

uint8_t uart_hw_rx_take(int port)
{
    struct uarte *u = &ports[port];
    uint8_t byte = u->rx_byte;
    /* While ENDRX is set the receiver holds further bytes. STARTRX first
     * rewinds the buffer pointer: Renode's model writes a byte that arrives
     * while ENDRX is clear after the previous one until STARTRX rewinds it,
     * so clearing first would let a byte land past rx_byte. Then ENDRX is
     * cleared, and a second STARTRX hands over a byte that waited meanwhile
     * (or leaves alone one that arrived in between, ENDRX set again). */
    TASKS_STARTRX(u->base) = 1;
    EVENTS_ENDRX(u->base) = 0;
    TASKS_STARTRX(u->base) = 1;
    return byte;
}

void uart_hw_rx_irq(int port, int on)
{
    if (on)
        INTENSET(ports[port].base) = INT_ENDRX;
    else
        INTENCLR(ports[port].base) = INT_ENDRX;
}

int uart_hw_tx_ready(int port)
{
    struct uarte *u = &ports[port];
    return !u->tx_busy || EVENTS_ENDTX(u->base) != 0;
}

void uart_hw_tx_put(int port, uint8_t byte)
{
    struct uarte *u = &ports[port];
    uint32_t b = u->base;
    /* Threads and the main loop share the console: one transfer at a time. */
    uint32_t s = irq_save();
    while (u->tx_busy && !EVENTS_ENDTX(b)) {
    }
    EVENTS_ENDTX(b) = 0;
    u->tx_byte = byte;
    TXD_PTR(b) = (uint32_t)&u->tx_byte;
    TXD_MAXCNT(b) = 1;
    TASKS_STARTTX(b) = 1;
    u->tx_busy = 1;
    irq_restore(s);
}

void uart_hw_console_polled_init(void)
{
    if (ENABLE(UARTE0_BASE) != ENABLE_UARTE)
        setup(&ports[UART_CONSOLE]);
}

static void irq(int port)
{
    uint32_t b = ports[port].base;
    if (EVENTS_ERROR(b)) {
        /* Framing or overrun: the byte is lost either way; clear and go on. */
        ERRORSRC(b) = ERRORSRC(b);
        EVENTS_ERROR(b) = 0;
    }
    uart_rx_isr(port);
}

void UARTE0_IRQHandler(void)
{
    irq(UART_CONSOLE);
}

void UARTE1_IRQHandler(void)
{
    irq(UART_SLIP);
}
