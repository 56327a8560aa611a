/* STM32F4 USARTs: USART2 is the console (PD5 TX, PD6 RX), USART3 the SLIP
 * line (PD8 TX, PD9 RX), both AF7 on APB1 (36 MHz), 115200 8N1. The pins
 * keep PA2 free for the base board's Ethernet MDIO. Register facts: RM0090,
 * USART chapter. Receiving is by interrupt (RXNE), one byte at a time. */
#include "board.h"

#define USART_SR(b)      REG32((b) + 0x00u)
#define USART_DR(b)      REG32((b) + 0x04u)
#define USART_BRR(b)     REG32((b) + 0x08u)
#define USART_CR1(b)     REG32((b) + 0x0Cu)
#define USART_CR2(b)     REG32((b) + 0x10u)
#define USART_CR3(b)     REG32((b) + 0x14u)

#define SR_ORE           (1u << 3)
#define SR_RXNE          (1u << 5)
#define SR_TXE           (1u << 7)
#define CR1_RE           (1u << 2)
#define CR1_TE           (1u << 3)
#define CR1_RXNEIE       (1u << 5)
#define CR1_UE           (1u << 13)
#define APB1ENR_USART2   (1u << 17)
#define APB1ENR_USART3   (1u << 18)
#define AF_USART         7

#define BAUD             115200u
/* Oversampling by 16: BRR holds APB1 / baud in 1/16ths (36 MHz: 312.5 -> 0x139). */
#define BRR_VALUE        ((APB1_HZ + BAUD / 2u) / BAUD)

struct usart {
    uint32_t base;
    int irq;
    uint32_t clock_bit;
    int tx_pin, rx_pin;
};

static const struct usart ports[2] = {
    { USART2_BASE, IRQ_USART2, APB1ENR_USART2, 5, 6 },
    { USART3_BASE, IRQ_USART3, APB1ENR_USART3, 8, 9 },
};

static void setup(const struct usart *u, uint32_t cr1)
{
    RCC_APB1ENR |= u->clock_bit;
    RCC_AHB1ENR |= 1u << 3; /* GPIOD */
    gpio_alternate(GPIOD_BASE, u->tx_pin, AF_USART);
    gpio_alternate(GPIOD_BASE, u->rx_pin, AF_USART);
    USART_CR1(u->base) = 0;
    USART_CR2(u->base) = 0;
    USART_CR3(u->base) = 0;
    USART_BRR(u->base) = BRR_VALUE;
    /* The model drops characters unless UE and TE (RE to receive) are set, as the silicon does. */
    USART_CR1(u->base) = CR1_UE | cr1;
}

void uart_hw_init(int port)
{
    const struct usart *u = &ports[port];
    setup(u, CR1_TE | CR1_RE | CR1_RXNEIE);
    nvic_clear_pending(u->irq);
    nvic_enable(u->irq);
}

int uart_hw_rx_ready(int port)
{
    return (USART_SR(ports[port].base) & SR_RXNE) != 0;
}

uint8_t uart_hw_rx_take(int port)
{
    return (uint8_t)USART_DR(ports[port].base);
}

void uart_hw_rx_irq(int port, int on)
{
    uint32_t b = ports[port].base;
    if (on)
        USART_CR1(b) |= CR1_RXNEIE;
    else
        USART_CR1(b) &= ~CR1_RXNEIE;
}

int uart_hw_tx_ready(int port)
{
    return (USART_SR(ports[port].base) & SR_TXE) != 0;
}

void uart_hw_tx_put(int port, uint8_t byte)
{
    USART_DR(ports[port].base) = byte;
}

void uart_hw_console_polled_init(void)
{
    const struct usart *u = &ports[UART_CONSOLE];
    if ((USART_CR1(u->base) & (CR1_UE | CR1_TE)) != (CR1_UE | CR1_TE))
        setup(u, CR1_TE);
}

static void irq(int port)
{
    uint32_t b = ports[port].base;
    /* An overrun (ORE) is cleared by reading SR then DR, which draining does;
     * with RXNE clear the stale byte must still be read out. */
    if ((USART_SR(b) & (SR_ORE | SR_RXNE)) == SR_ORE)
        (void)USART_DR(b);
    uart_rx_isr(port);
}

void USART2_IRQHandler(void)
{
    irq(UART_CONSOLE);
}

void USART3_IRQHandler(void)
{
    irq(UART_SLIP);
}
