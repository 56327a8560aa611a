/* CMSDK APB UART driver: UART0 (console) and UART1 (SLIP line). */
#include "uart.h"

#include "board.h"
#include "systick.h"

#define UART_DATA(b)      REG32((b) + 0x00u)
#define UART_STATE(b)     REG32((b) + 0x04u)
#define UART_CTRL(b)      REG32((b) + 0x08u)
#define UART_INTCLEAR(b)  REG32((b) + 0x0Cu)
#define UART_BAUDDIV(b)   REG32((b) + 0x10u)

#define STATE_TX_FULL     (1u << 0)
#define STATE_RX_FULL     (1u << 1)
#define CTRL_TX_EN        (1u << 0)
#define CTRL_RX_EN        (1u << 1)
#define CTRL_RX_IRQ_EN    (1u << 3)
#define INT_RX            (1u << 1)

/* A blocked line (nobody reading the host side) must not hang the main loop. */
#define TX_BLOCKED_MS     100u

/* The UART holds one received byte, so the interrupt handler moves every
 * byte into a ring at once. When the ring is full the handler leaves the
 * byte in DATA and stops: the UART then refuses further bytes (QEMU keeps
 * them queued on its chardev) until the main loop has made room and takes
 * that byte itself. So a burst larger than the ring is slowed, not lost. */
struct uart_rx {
    uint32_t base;
    volatile uint8_t *ring;
    uint32_t mask;           /* ring size - 1 (a power of two) */
    volatile uint32_t head;  /* written by the interrupt handler */
    volatile uint32_t tail;  /* written by the main loop */
    volatile uint8_t paused; /* ring was full; a byte waits in DATA */
    volatile uint32_t pauses;
};

#define UART0_RING_SIZE 1024u
#ifndef UART1_RING_SIZE /* tests build a tiny one to exercise the pause */
#define UART1_RING_SIZE 8192u /* > 2 escaped 1500-byte SLIP frames */
#endif
_Static_assert((UART1_RING_SIZE & (UART1_RING_SIZE - 1u)) == 0u, "UART1_RING_SIZE must be a power of two");
static volatile uint8_t uart0_ring[UART0_RING_SIZE];
static volatile uint8_t uart1_ring[UART1_RING_SIZE];
static struct uart_rx uart0_rx = { .base = UART0_BASE, .ring = uart0_ring, .mask = UART0_RING_SIZE - 1u };
static struct uart_rx uart1_rx = { .base = UART1_BASE, .ring = uart1_ring, .mask = UART1_RING_SIZE - 1u };

static void port_init(uint32_t base, int rx_irq)
{
    UART_CTRL(base) = 0;
    UART_BAUDDIV(base) = 16; /* QEMU ignores the rate but rejects values < 16 */
    UART_INTCLEAR(base) = 0xF;
    UART_CTRL(base) = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_IRQ_EN;
    nvic_clear_pending(rx_irq);
    nvic_enable(rx_irq);
}

/* Interrupt context, or the main loop with interrupts masked. */
static void rx_drain(struct uart_rx *u)
{
    while (UART_STATE(u->base) & STATE_RX_FULL) {
        uint32_t next = (u->head + 1u) & u->mask;
        if (next == u->tail) {
            if (!u->paused)
                u->pauses++;
            u->paused = 1;
            return;
        }
        u->ring[u->head] = (uint8_t)UART_DATA(u->base);
        u->head = next;
    }
}

static void rx_irq(struct uart_rx *u)
{
    /* Clear first: a byte arriving while we read DATA raises the interrupt again. */
    UART_INTCLEAR(u->base) = INT_RX;
    rx_drain(u);
}

static int rx_getc(struct uart_rx *u)
{
    if (u->tail == u->head)
        return -1;
    uint8_t byte = u->ring[u->tail];
    u->tail = (u->tail + 1u) & u->mask;
    if (u->paused) {
        /* Room again: take the waiting byte, which lets the next one in. */
        uint32_t s = irq_save();
        u->paused = 0;
        rx_drain(u);
        irq_restore(s);
    }
    return byte;
}

static int tx_byte(uint32_t base, uint8_t byte, uint32_t timeout_ms)
{
    if (UART_STATE(base) & STATE_TX_FULL) {
        uint32_t start = fw_millis();
        while (UART_STATE(base) & STATE_TX_FULL) {
            if (timeout_ms && fw_millis() - start > timeout_ms)
                return -1;
        }
    }
    UART_DATA(base) = byte;
    return 0;
}

/* ---- UART0: console ---- */

void uart_init(void)
{
    port_init(UART0_BASE, IRQ_UART0_RX);
}

void UART0_RX_IRQHandler(void)
{
    rx_irq(&uart0_rx);
}

int uart_getc(void)
{
    return rx_getc(&uart0_rx);
}

uint32_t uart_rx_pauses(void)
{
    return uart0_rx.pauses;
}

void uart_putc(char c)
{
    (void)tx_byte(UART0_BASE, (uint8_t)c, 0); /* the console waits for the host */
}

void uart_write(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        uart_putc(s[i]);
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

void uart_puts_polled(const char *s)
{
    if (!(UART_CTRL(UART0_BASE) & CTRL_TX_EN)) {
        UART_BAUDDIV(UART0_BASE) = 16;
        UART_CTRL(UART0_BASE) |= CTRL_TX_EN;
    }
    uart_puts(s);
}

/* ---- UART1: SLIP line ---- */

void uart1_init(void)
{
    port_init(UART1_BASE, IRQ_UART1_RX);
}

void UART1_RX_IRQHandler(void)
{
    rx_irq(&uart1_rx);
}

int uart1_getc(void)
{
    return rx_getc(&uart1_rx);
}

void uart1_flush_rx(void)
{
    /* Bounded: bytes still streaming in are not this call's business. */
    for (uint32_t i = 0; i <= UART1_RING_SIZE && uart1_getc() >= 0; i++) {
    }
}

int uart1_write(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (tx_byte(UART1_BASE, data[i], TX_BLOCKED_MS) != 0)
            return -1;
    return 0;
}

uint32_t uart1_rx_pauses(void)
{
    return uart1_rx.pauses;
}
