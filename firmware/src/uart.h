/* UART0 console: interrupt-driven receive into a ring buffer, polled transmit. */
#ifndef UART_H
#define UART_H

#include <stddef.h>
#include <stdint.h>

void uart_init(void);
void uart_putc(char c);
void uart_write(const char *s, size_t len);
void uart_puts(const char *s);
/* Usable from fault handlers and before uart_init(). */
void uart_puts_polled(const char *s);
/* Next received byte, or -1 when none is waiting. */
int  uart_getc(void);
/* Bytes lost because the ring buffer was full. */
uint32_t uart_rx_dropped(void);

#endif
