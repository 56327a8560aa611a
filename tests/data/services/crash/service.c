#include <embserve.h>

#define NOWHERE ((volatile uint32_t *)0x50000000u)

int setup(void)
{
    embserve_printf("crash: armed");
    return 0;
}

void loop(void)
{
    embserve_sleep(1000);
    embserve_printf("crash: writing to %x", (unsigned)NOWHERE);
    *NOWHERE = 0xdead;
    embserve_printf("crash: survived?");
}
