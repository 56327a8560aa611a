/* Zephyr-style shell on the UART0 console (prompt "uart:~$ "). */
#ifndef SHELL_H
#define SHELL_H

#define SHELL_PROMPT "uart:~$ "

void shell_init(void);   /* prints the first prompt */
/* Handles every byte waiting on the console; returns how many it consumed. */
int  shell_poll(void);
/* Runs one command line as if typed (no echo); for boot scripts and tests. */
void shell_execute(char *line);
/* Prints "[service_name] line" without tearing the prompt or a half-typed command.
 * Main thread only (the runtime delivers service lines through rt_poll()). */
void fw_console_line(const char *service_name, const char *line);

#endif
