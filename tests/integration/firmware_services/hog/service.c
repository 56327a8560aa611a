/* Spins without sleeping: preemption must keep the node and other services
 * running, and on_quit() must still end it. */
#include <embserve.h>

static volatile uint8_t running;
static volatile uint32_t spins;

int setup(void)
{
    running = 1;
    embserve_printf("hog started");
    return 0;
}

void loop(void)
{
    while (running)
        spins++;
    embserve_printf("hog stopped after %u spins", (unsigned)spins);
}

void on_quit(void)
{
    running = 0;
}
