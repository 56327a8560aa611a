/* Calls embserve_sleep(0) (a plain yield) YIELDS times, then says so: two of
 * these running together measure the runtime's context-switch cost. */
#include <embserve.h>

#define YIELDS 20000

int setup(void)
{
    return 0;
}

void loop(void)
{
    for (int i = 0; i < YIELDS; i++)
        embserve_sleep(0);
    embserve_printf("yielded %d times", YIELDS);
}
