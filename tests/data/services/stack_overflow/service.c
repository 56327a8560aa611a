#include <embserve.h>

static int depth(volatile int n)
{
    volatile char frame[64];
    frame[0] = (char)n;
    return depth(n + 1) + frame[0];
}

int setup(void)
{
    return 0;
}

void loop(void)
{
    embserve_sleep(1000);
    embserve_printf("%d", depth(0));
}
