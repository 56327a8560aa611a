#include <embserve.h>

int setup(void)
{
    return 0;
}

void loop(void)
{
    embserve_sleep(1000);
    __asm__ volatile("udf #42");
}
