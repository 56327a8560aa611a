/* Unbounded recursion with a local buffer: the runtime's stack guard must
 * stop the service before it overwrites anything else. */
#include <embserve.h>

static int depth;

static int dive(int n)
{
    volatile char pad[64];
    pad[0] = (char)n;
    depth = n;
    return dive(n + 1) + pad[0];
}

int setup(void)
{
    embserve_printf("stack_overflow armed");
    return 0;
}

void loop(void)
{
    embserve_sleep(100);
    embserve_printf("reached %d", dive(0));
}
