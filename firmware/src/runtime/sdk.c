/* The embServe SDK API as services import it by name.  Every function runs in
 * the calling service's thread; results for the rest of the firmware are
 * queued and handed over by rt_poll() in the main thread.  The service is
 * identified by the thread, not by the name argument the module passes. */
#include <stdint.h>
#include <string.h>

#include "fmt.h"
#include "queue.h"
#include "rt_internal.h"
#include "sched.h"

#if defined(__has_include)
#if __has_include("../sensors.h")
#include "../sensors.h"
#define RT_HAVE_SENSORS_H 1
#endif
#endif
#ifndef RT_HAVE_SENSORS_H
int fw_sensor_read(int sdk_type, float *value);
#endif

/* The 24-byte reading, as the project SDK (hil/sdk/include/embserve.h)
 * declares it: i32 id @0, i32 type @4, u32 timestamp_ms @8, float values[3]
 * @12 (FITA's binary only fixes the values at offset 12). */
#define SENSOR_DATA_BYTES 24

int embserve_printf_impl(const char *name, const char *fmt, const void *va);
int embserve_output_impl(const char *name, const rt_io_t *io);
int embserve_get_sensor_impl(const char *name, int type, int *id);
int embserve_get_sensor_data_impl(const char *name, int id, void *data);
void embserve_sleep_impl(const char *name, uint32_t ms);

int embserve_printf_impl(const char *name, const char *fmt, const void *va)
{
    char line[RTQ_LINE_MAX + 1];
    int slot = rt_current_slot();
    (void)name;

    if (slot < 0 || fmt == NULL)
        return -1;
    uint32_t n = rt_vformat(line, sizeof(line), fmt, va);
    /* One console line per printf call; embedded newlines split it and a
     * trailing newline does not add an empty line. */
    uint32_t start = 0;
    for (uint32_t i = 0; i <= n; i++) {
        if (i < n && line[i] != '\n')
            continue;
        if (i == n && start == n)
            break;
        uint32_t end = i;
        if (end > start && line[end - 1] == '\r')
            end--;
        rt_emit_console(slot, line + start, end - start);
        start = i + 1;
    }
    return (int)n;
}

int embserve_output_impl(const char *name, const rt_io_t *io)
{
    uint8_t data[RTQ_DATA_MAX];
    char key[sizeof(io->key)];
    int slot = rt_current_slot();
    (void)name;

    if (slot < 0 || io == NULL)
        return -1;
    memcpy(key, io->key, sizeof(key));
    if (memchr(key, 0, sizeof(key)) == NULL)
        return -1;
    int idx = rt_output_index(slot, key);
    if (idx < 0)
        return -1;      /* not declared in the manifest: discarded */
    uint32_t bytes = io->data_len * 4u;     /* data_len counts 32-bit values */
    if (io->data_len > RTQ_DATA_MAX / 4u)
        bytes = RTQ_DATA_MAX;
    if (bytes && io->data == NULL)
        return -1;
    memcpy(data, io->data, bytes);
    rt_emit_output(slot, idx, io->type, data, bytes);
    return 0;
}

int embserve_get_sensor_impl(const char *name, int type, int *id)
{
    float v;
    (void)name;

    if (id == NULL || fw_sensor_read(type, &v) != 0)
        return -1;
    /* The sensor's id is its SDK type: one sensor of each type per node. */
    *id = type;
    return 0;
}

int embserve_get_sensor_data_impl(const char *name, int id, void *data)
{
    uint8_t out[SENSOR_DATA_BYTES];
    float v;
    (void)name;

    if (data == NULL || fw_sensor_read(id, &v) != 0)
        return -1;
    int32_t ident = id;
    int32_t type = id;      /* ids are SDK sensor types */
    uint32_t ts = sched_millis();
    memset(out, 0, sizeof(out));
    memcpy(out, &ident, 4);
    memcpy(out + 4, &type, 4);
    memcpy(out + 8, &ts, 4);
    memcpy(out + 12, &v, 4);
    memcpy(data, out, sizeof(out));
    return 0;
}

void embserve_sleep_impl(const char *name, uint32_t ms)
{
    (void)name;
    if (rt_current_slot() < 0)
        return;
    sched_sleep(ms);
}

static const struct {
    const char *name;
    const void *addr;
} sdk_exports[] = {
    {"embserve_printf_impl", (const void *)embserve_printf_impl},
    {"embserve_output_impl", (const void *)embserve_output_impl},
    {"embserve_get_sensor_impl", (const void *)embserve_get_sensor_impl},
    {"embserve_get_sensor_data_impl", (const void *)embserve_get_sensor_data_impl},
    {"embserve_sleep_impl", (const void *)embserve_sleep_impl},
    {"memcpy", (const void *)memcpy},
    {"memset", (const void *)memset},
    {"strcmp", (const void *)strcmp},
};

uint32_t sdk_resolve(const char *name)
{
    for (uint32_t i = 0; i < sizeof(sdk_exports) / sizeof(sdk_exports[0]); i++)
        if (strcmp(sdk_exports[i].name, name) == 0)
            return (uint32_t)(uintptr_t)sdk_exports[i].addr;
    return 0;
}
