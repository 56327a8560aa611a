#include <embserve.h>

int frobnicate(int x); /* not part of the SDK */

int setup(void)
{
    return frobnicate(1);
}

void loop(void)
{
}
