/* CMSDK APB UARTs of mps2-an385: UART0 is the console, UART1 the SLIP line. */
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

static const uint32_t base[2] = { UART0_BASE, UART1_BASE };
static const int rx_irq[2] = { IRQ_UART0_RX, IRQ_UART1_RX };

void uart_hw_init(int port)
{
    uint32_t b = base[port];
    UART_CTRL(b) = 0;
    UART_BAUDDIV(b) = 16; /* QEMU ignores the rate but rejects values < 16 */
    UART_INTCLEAR(b) = 0xF;
    UART_CTRL(b) = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_IRQ_EN;
    nvic_clear_pending(rx_irq[port]);
    nvic_enable(rx_irq[port]);
}

int uart_hw_rx_ready(int port)
{
    return (UART_STATE(base[port]) & STATE_RX_FULL) != 0;
}

uint8_t uart_hw_rx_take(int port)
{
    return (uint8_t)UART_DATA(base[port]);
}

/* The RX interrupt fires when a byte arrives, and none arrives while one
 * waits in DATA: nothing to switch off while the ring is full. */
void uart_hw_rx_irq(int port, int on)
{
    (void)port;
    (void)on;
}

int uart_hw_tx_ready(int port)
{
    return (UART_STATE(base[port]) & STATE_TX_FULL) == 0;
}

void uart_hw_tx_put(int port, uint8_t byte)
{
    UART_DATA(base[port]) = byte;
}

void uart_hw_console_polled_init(void)
{
    if (!(UART_CTRL(UART0_BASE) & CTRL_TX_EN)) {
        UART_BAUDDIV(UART0_BASE) = 16;
        UART_CTRL(UART0_BASE) |= CTRL_TX_EN;
    }
}

/* Clear first: a byte arriving while we read DATA raises the interrupt again. */
void UART0_RX_IRQHandler(void)
{
    UART_INTCLEAR(UART0_BASE) = INT_RX;
    uart_rx_isr(UART_CONSOLE);
}

void UART1_RX_IRQHandler(void)
{
    UART_INTCLEAR(UART1_BASE) = INT_RX;
    uart_rx_isr(UART_SLIP);
}
