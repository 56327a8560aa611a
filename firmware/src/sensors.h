/* Simulated sensors: values set from the shell, read by services through the SDK. */
#ifndef SENSORS_H
#define SENSORS_H

#define SENSOR_SDK_TEMPERATURE 3

/* 0 ok, -1 unknown sensor name */
int sensor_set(const char *name, float v);
int sensor_get(const char *name, float *v);
/* SDK sensor type (3 = temperature) -> current value; 0 ok, -1 no such sensor */
int fw_sensor_read(int sdk_type, float *value);
/* Name of the i-th sensor, NULL past the end (for listings). */
const char *sensor_name(int i);

#endif
