/* CMSDK APB UART0 driver (console). */
#include "uart.h"

#include "board.h"

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

/* The UART holds one received byte, so the interrupt handler moves every
 * byte into this ring at once; a scripted host can then send whole lines
 * while the main loop is busy without losing input. */
#define RX_RING_SIZE 1024u
static volatile uint8_t rx_ring[RX_RING_SIZE];
static volatile uint32_t rx_head; /* written by the interrupt handler */
static volatile uint32_t rx_tail; /* written by the main loop */
static volatile uint32_t rx_dropped;

void uart_init(void)
{
    UART_CTRL(UART0_BASE) = 0;
    UART_BAUDDIV(UART0_BASE) = 16; /* QEMU ignores the rate but rejects values < 16 */
    UART_INTCLEAR(UART0_BASE) = 0xF;
    UART_CTRL(UART0_BASE) = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_IRQ_EN;
    nvic_clear_pending(IRQ_UART0_RX);
    nvic_enable(IRQ_UART0_RX);
}

void UART0_RX_IRQHandler(void)
{
    /* Clear first: a byte arriving while we read DATA raises the interrupt again. */
    UART_INTCLEAR(UART0_BASE) = INT_RX;
    while (UART_STATE(UART0_BASE) & STATE_RX_FULL) {
        uint8_t byte = (uint8_t)UART_DATA(UART0_BASE);
        uint32_t next = (rx_head + 1u) % RX_RING_SIZE;
        if (next == rx_tail) {
            rx_dropped++;
            continue;
        }
        rx_ring[rx_head] = byte;
        rx_head = next;
    }
}

int uart_getc(void)
{
    if (rx_tail == rx_head)
        return -1;
    uint8_t byte = rx_ring[rx_tail];
    rx_tail = (rx_tail + 1u) % RX_RING_SIZE;
    return byte;
}

uint32_t uart_rx_dropped(void)
{
    return rx_dropped;
}

void uart_putc(char c)
{
    while (UART_STATE(UART0_BASE) & STATE_TX_FULL) {
    }
    UART_DATA(UART0_BASE) = (uint8_t)c;
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
