#include <embserve.h>

static volatile uint32_t spins;

int setup(void)
{
    return 0;
}

void loop(void)
{
    embserve_printf("busy: spinning");
    for (;;)
        spins++;
}
