/* The console (port 0) and the SLIP line (port 1): receive rings on top of
 * the board's UART ports (uart_hw_* in src/boards/<board>/). */
#include "uart.h"

#include "board.h"
#include "systick.h"

/* A blocked line (nobody reading the host side) must not hang the main loop. */
#define TX_BLOCKED_MS     100u

/* A port holds few received bytes, so the interrupt handler moves every
 * byte into a ring at once. When the ring is full the handler leaves the
 * byte in the port, turns the port's receive interrupt off and stops: the
 * port then refuses further bytes (the emulator keeps them queued) until
 * the main loop has made room and takes that byte itself. So a burst larger
 * than the ring is slowed, not lost. */
struct uart_rx {
    int port;
    volatile uint8_t *ring;
    uint32_t mask;           /* ring size - 1 (a power of two) */
    volatile uint32_t head;  /* written by the interrupt handler */
    volatile uint32_t tail;  /* written by the main loop */
    volatile uint8_t paused; /* ring was full; a byte waits in the port */
    volatile uint32_t pauses;
};

#define UART0_RING_SIZE 1024u
#ifndef UART1_RING_SIZE /* tests build a tiny one to exercise the pause */
#define UART1_RING_SIZE 8192u /* > 2 escaped 1500-byte SLIP frames */
#endif
_Static_assert((UART1_RING_SIZE & (UART1_RING_SIZE - 1u)) == 0u, "UART1_RING_SIZE must be a power of two");
static volatile uint8_t uart0_ring[UART0_RING_SIZE];
static volatile uint8_t uart1_ring[UART1_RING_SIZE];
static struct uart_rx rx_ports[2] = {
    { .port = UART_CONSOLE, .ring = uart0_ring, .mask = UART0_RING_SIZE - 1u },
    { .port = UART_SLIP, .ring = uart1_ring, .mask = UART1_RING_SIZE - 1u },
};

/* Interrupt context, or the main loop with interrupts masked. */
static void rx_drain(struct uart_rx *u)
{
    while (uart_hw_rx_ready(u->port)) {
        uint32_t next = (u->head + 1u) & u->mask;
        if (next == u->tail) {
            if (!u->paused)
                u->pauses++;
            u->paused = 1;
            uart_hw_rx_irq(u->port, 0);
            return;
        }
        u->ring[u->head] = uart_hw_rx_take(u->port);
        u->head = next;
    }
}

void uart_rx_isr(int port)
{
    rx_drain(&rx_ports[port]);
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
        if (!u->paused)
            uart_hw_rx_irq(u->port, 1);
        irq_restore(s);
    }
    return byte;
}

static int tx_byte(int port, uint8_t byte, uint32_t timeout_ms)
{
    if (!uart_hw_tx_ready(port)) {
        uint32_t start = fw_millis();
        while (!uart_hw_tx_ready(port)) {
            if (timeout_ms && fw_millis() - start > timeout_ms)
                return -1;
        }
    }
    uart_hw_tx_put(port, byte);
    return 0;
}

/* ---- UART0: console ---- */

void uart_init(void)
{
    uart_hw_init(UART_CONSOLE);
}

int uart_getc(void)
{
    return rx_getc(&rx_ports[UART_CONSOLE]);
}

uint32_t uart_rx_pauses(void)
{
    return rx_ports[UART_CONSOLE].pauses;
}

void uart_putc(char c)
{
    (void)tx_byte(UART_CONSOLE, (uint8_t)c, 0); /* the console waits for the host */
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
    uart_hw_console_polled_init();
    while (*s) {
        while (!uart_hw_tx_ready(UART_CONSOLE)) {
        }
        uart_hw_tx_put(UART_CONSOLE, (uint8_t)*s++);
    }
}

/* ---- UART1: SLIP line ---- */

void uart1_init(void)
{
    uart_hw_init(UART_SLIP);
}

int uart1_getc(void)
{
    return rx_getc(&rx_ports[UART_SLIP]);
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
        if (tx_byte(UART_SLIP, data[i], TX_BLOCKED_MS) != 0)
            return -1;
    return 0;
}

uint32_t uart1_rx_pauses(void)
{
    return rx_ports[UART_SLIP].pauses;
}
