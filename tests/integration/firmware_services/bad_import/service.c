/* Calls embserve_reboot_impl, which no embServe firmware provides: the
 * install must fail with "unknown import 'embserve_reboot_impl'". */
#include <embserve.h>

void embserve_reboot_impl(const char *name);

int setup(void)
{
    return 0;
}

void loop(void)
{
    embserve_reboot_impl(EMBSERVE_SERVICE_NAME);
}
