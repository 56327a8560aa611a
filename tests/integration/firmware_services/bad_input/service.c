/* on_input() misbehaves: "hang" spins forever, "crash" executes an undefined
 * instruction.  Either way the runtime must stop the service (the caller gets
 * an error) and keep the node responsive. */
#include <embserve.h>

static volatile uint8_t running;

int setup(void)
{
    running = 1;
    return 0;
}

void loop(void)
{
    while (running)
        embserve_sleep(50);
}

void on_input(embserve_io_t *io)
{
    embserve_printf("on_input(%s)", io->key);
    if (strcmp(io->key, "crash") == 0)
        __asm volatile(".short 0xde43");    /* udf #0x43 */
    for (;;)
        ;
}

void on_quit(void)
{
    running = 0;
}
