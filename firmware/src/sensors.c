#include "sensors.h"

#include <string.h>

struct sensor {
    const char *name;
    int sdk_type;
    float value;
};

/* Values are written by the shell (main thread) and read by service threads;
 * a 32-bit float store is a single access on Cortex-M3, so no lock is needed. */
static struct sensor sensors[] = {
    { "temperature", SENSOR_SDK_TEMPERATURE, 22.5f },
};

#define SENSOR_COUNT (int)(sizeof(sensors) / sizeof(sensors[0]))

static struct sensor *find_by_name(const char *name)
{
    for (int i = 0; i < SENSOR_COUNT; i++)
        if (strcmp(sensors[i].name, name) == 0)
            return &sensors[i];
    return NULL;
}

int sensor_set(const char *name, float v)
{
    struct sensor *s = find_by_name(name);
    if (!s)
        return -1;
    s->value = v;
    return 0;
}

int sensor_get(const char *name, float *v)
{
    struct sensor *s = find_by_name(name);
    if (!s)
        return -1;
    *v = s->value;
    return 0;
}

int fw_sensor_read(int sdk_type, float *value)
{
    for (int i = 0; i < SENSOR_COUNT; i++) {
        if (sensors[i].sdk_type == sdk_type) {
            *value = sensors[i].value;
            return 0;
        }
    }
    return -1;
}

const char *sensor_name(int i)
{
    return (i >= 0 && i < SENSOR_COUNT) ? sensors[i].name : NULL;
}
