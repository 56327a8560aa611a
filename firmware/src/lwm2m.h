/* LwM2M 1.1 client over CoAP/UDP: registration with one server and the device
 * management interface (read, write, execute, create, delete, discover,
 * write-attributes, observe) over the objects in objects.c. */
#ifndef LWM2M_H
#define LWM2M_H

#include <stdint.h>

#define LWM2M_LOCAL_PORT        5683u  /* the node's CoAP port */
#define LWM2M_DEFAULT_PORT      5683u  /* server port when the URI names none */
#define LWM2M_DEFAULT_LIFETIME  300u   /* seconds */
#define LWM2M_MAX_ENDPOINT      63

/* ---- shared interface (fixed in the firmware plan) ---- */
void lwm2m_init(void);
/* "coap://10.0.2.2:5683", endpoint name; registers at once. 0 ok, -1 bad URI, -2 bad endpoint. */
int lwm2m_server_add(const char *uri, const char *endpoint);
void lwm2m_poll(uint32_t now_ms);
/* Sends De-register and waits briefly for the answer (call before a reboot). */
void lwm2m_deregister(void);
/* A resource value changed: observers of it (or of its instance/object) get a notification. */
void lwm2m_resource_changed(uint16_t obj, uint16_t inst, uint16_t res);

/* ---- for objects.c and diagnostics ---- */
/* Instances appeared or vanished: the next Update carries the new object links. */
void lwm2m_instances_changed(void);
/* /obj/inst was deleted: its observers get a final 4.04, observers of /obj a notification. */
void lwm2m_instance_removed(uint16_t obj, uint16_t inst);
void lwm2m_trigger_update(void);
uint32_t lwm2m_lifetime(void);
void lwm2m_set_lifetime(uint32_t seconds);
int lwm2m_is_registered(void);
/* "idle", "registering", "registered", "waiting to retry" */
const char *lwm2m_state_name(void);
/* One line on the console as "[lwm2m] ...", without tearing the shell prompt. */
void lwm2m_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
