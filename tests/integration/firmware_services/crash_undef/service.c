/* Runs into a permanently undefined instruction: a UsageFault (UNDEFINSTR). */
#include <embserve.h>

int setup(void)
{
    embserve_printf("crash_undef armed");
    return 0;
}

void loop(void)
{
    embserve_sleep(100);
    __asm volatile(".short 0xde42");     /* udf #0x42 */
    embserve_printf("still alive after udf");
}
