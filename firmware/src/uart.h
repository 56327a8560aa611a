/* The console UART (port 0) and the SLIP line (port 1, "UART1"); the board
 * says which of its UARTs they are.
 * Both receive by interrupt into a ring buffer and transmit polled. */
#ifndef UART_H
#define UART_H

#include <stddef.h>
#include <stdint.h>

/* ---- UART0: console ---- */
void uart_init(void);
void uart_putc(char c);
void uart_write(const char *s, size_t len);
void uart_puts(const char *s);
/* Usable from fault handlers and before uart_init(). */
void uart_puts_polled(const char *s);
/* Next received byte, or -1 when none is waiting. */
int  uart_getc(void);
/* Times the ring was full and receiving paused (see uart.c: no byte is lost). */
uint32_t uart_rx_pauses(void);

/* ---- UART1: the SLIP network line ---- */
void uart1_init(void);
/* Next received byte, or -1 when none is waiting. Main loop only. */
int  uart1_getc(void);
/* Drops the bytes received so far (a fresh start for the line). */
void uart1_flush_rx(void);
/* Sends len bytes; 0 ok, -1 when the line stayed blocked past the timeout
 * (the rest of the bytes are not sent). */
int  uart1_write(const uint8_t *data, size_t len);
/* Times receiving paused because the ring was full. */
uint32_t uart1_rx_pauses(void);

#endif
