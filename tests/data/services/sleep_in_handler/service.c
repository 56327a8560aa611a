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
        embserve_sleep(1000);
}

void on_input(embserve_io_t *io)
{
    (void)io;
    embserve_sleep(10);
}

void on_quit(void)
{
    running = 0;
}
