/*
 * embserve.h - the embServe service SDK (API level 1), embserve-hil edition.
 *
 * A service is a C file that defines
 *
 *     int  setup(void);                 called once on activation
 *     void loop(void);                  called after setup(); paces itself with
 *                                       embserve_sleep() and returns when asked to quit
 *     void on_input(embserve_io_t *io); optional: a declared input was written
 *     void on_quit(void);               optional: the service is being stopped
 *
 * and talks to the firmware only through the calls below. Every firmware entry
 * point takes the service name first; the macros pass EMBSERVE_SERVICE_NAME,
 * which the SDK builder defines from service.toml.
 *
 * Exported functions are entered through wrappers that preserve only r0 and r1,
 * so they take at most two arguments.
 */
#ifndef EMBSERVE_H
#define EMBSERVE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define EMBSERVE_SDK_API 1

#ifndef EMBSERVE_SERVICE_NAME
#error "EMBSERVE_SERVICE_NAME is not defined: build the service with `embserve-hil build-service DIR`"
#endif

/* Value types of inputs and outputs, as in the manifest's `type` field. */
#define EMBSERVE_TYPE_INT   0
#define EMBSERVE_TYPE_FLOAT 1

/* Sensor types understood by embserve_get_sensor(). */
#define EMBSERVE_SENSOR_TEMPERATURE 3

#define EMBSERVE_KEY_MAX 32

/* One input or output exchange. `data` points at `data_len` values of `type`. */
typedef struct {
    char key[EMBSERVE_KEY_MAX]; /* NUL-terminated; at most 31 characters */
    uint8_t type;               /* EMBSERVE_TYPE_* */
    void *data;
    uint32_t data_len;          /* number of values at `data` */
} embserve_io_t;

/* A sensor reading: 24 bytes, values from offset 12. */
typedef struct {
    int32_t id;                 /* sensor id from embserve_get_sensor() */
    int32_t type;               /* EMBSERVE_SENSOR_* */
    uint32_t timestamp_ms;      /* device uptime of the reading */
    float values[3];            /* values[0] holds a scalar reading */
} embserve_sensor_data_t;

_Static_assert(sizeof(embserve_io_t) == 44, "embserve_io_t layout is part of the SDK ABI");
_Static_assert(sizeof(embserve_sensor_data_t) == 24, "embserve_sensor_data_t layout is part of the SDK ABI");

/* Firmware entry points (resolved by name when the module is loaded). */
int embserve_printf_impl(const char *name, const char *fmt, va_list va);
int embserve_output_impl(const char *name, embserve_io_t *io);
int embserve_get_sensor_impl(const char *name, int type, int *id);
int embserve_get_sensor_data_impl(const char *name, int id, embserve_sensor_data_t *data);
void embserve_sleep_impl(const char *name, uint32_t ms);

/* The only C library functions the firmware exports to services. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int strcmp(const char *a, const char *b);

/* One console line per call; supports %s %d %i %u %lu %x %c %f %%. */
static int embserve_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int embserve_printf(const char *fmt, ...)
{
    va_list va;
    int n;

    va_start(va, fmt);
    n = embserve_printf_impl(EMBSERVE_SERVICE_NAME, fmt, va);
    va_end(va);
    return n;
}

/* Publish an output declared in the manifest; returns < 0 on error. */
#define embserve_output(io) embserve_output_impl(EMBSERVE_SERVICE_NAME, (io))
/* Find a sensor of `type`; stores its id in *id and returns >= 0 on success. */
#define embserve_get_sensor(type, id) embserve_get_sensor_impl(EMBSERVE_SERVICE_NAME, (type), (id))
/* Read sensor `id` into *data; returns >= 0 on success. */
#define embserve_get_sensor_data(id, data) embserve_get_sensor_data_impl(EMBSERVE_SERVICE_NAME, (id), (data))
/* Suspend this service for `ms` milliseconds; other services keep running. */
#define embserve_sleep(ms) embserve_sleep_impl(EMBSERVE_SERVICE_NAME, (ms))

#endif /* EMBSERVE_H */
