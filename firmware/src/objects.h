/* The node's LwM2M objects: 1 Server, 3 Device, 4 Connectivity Monitoring,
 * 9 Software Management, 15 DevCapMgmt, 3303/3300 sensors, 3308 set points
 * (service inputs), 35003 Software Package Monitoring. The LwM2M layer
 * (lwm2m.c) does the encoding; this module holds values and the /9 lifecycle
 * that drives the service runtime.
 *
 * Functions returning uint8_t answer 0 on success or the CoAP error code to
 * send (e.g. COAP_404_NOT_FOUND). */
#ifndef OBJECTS_H
#define OBJECTS_H

#include <stdint.h>

enum { OBJ_STRING, OBJ_INT, OBJ_FLOAT, OBJ_BOOL, OBJ_OPAQUE, OBJ_TIME, OBJ_OBJLNK, OBJ_NONE };
enum { OP_R = 1, OP_W = 2, OP_E = 4 };

typedef struct {
    uint16_t id;
    uint8_t type;      /* OBJ_* */
    uint8_t ops;       /* OP_* */
    uint8_t multiple;  /* multiple-instance resource */
} obj_res_t;

/* One value, read from or written to a resource (instance). Strings and
 * opaque data are (data, len), not NUL-terminated; reads that format a
 * value keep it in text[]. */
typedef struct {
    uint8_t type;
    int64_t i;         /* OBJ_INT, OBJ_TIME, OBJ_BOOL */
    double f;          /* OBJ_FLOAT */
    uint16_t lnk_obj, lnk_inst;
    const uint8_t *data;
    uint32_t len;
    char text[72];
} obj_value_t;

#define OBJ_MAX_INSTANCES 12
#define OBJ_PACKAGE_MAX   8192u  /* bytes of service.json one /9 instance holds */
#define OBJ_SW_FIRST_ID   0      /* first free /9 id when the server does not choose */

void objects_init(void);
/* Sensor changes and deferred actions (reboot); called from lwm2m_poll. */
void objects_poll(uint32_t now_ms);

/* Objects the node implements, ascending; *count set. */
const uint16_t *obj_list(int *count);
int obj_known(uint16_t obj);
/* Listed in the registration even without instances (objects the server may create in). */
int obj_listed_empty(uint16_t obj);
int obj_instances(uint16_t obj, uint16_t *ids, int max);
int obj_instance_exists(uint16_t obj, uint16_t inst);
const obj_res_t *obj_resources(uint16_t obj, int *count);
const obj_res_t *obj_resource(uint16_t obj, uint16_t res);
/* Resource instance ids of a multiple resource; returns the count. */
int obj_res_instances(uint16_t obj, uint16_t inst, uint16_t res, uint16_t *ids, int max);

uint8_t obj_read(uint16_t obj, uint16_t inst, uint16_t res, uint16_t ri, obj_value_t *v);
/* check_only: validate without changing anything (first pass of a multi-resource write). */
uint8_t obj_write(uint16_t obj, uint16_t inst, uint16_t res, const obj_value_t *v, int check_only);
uint8_t obj_execute(uint16_t obj, uint16_t inst, uint16_t res, const uint8_t *arg, uint32_t len);
/* inst < 0: first free id. */
uint8_t obj_create(uint16_t obj, int32_t inst, uint16_t *created);
uint8_t obj_delete(uint16_t obj, uint16_t inst);
/* Diagnostic text for the last error code returned (for response payloads). */
const char *obj_last_error(void);

#endif
