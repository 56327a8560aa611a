/* Object table of the node and the /9 software lifecycle (OMA object 9 states)
 * on top of the service runtime. */
#include "objects.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "coap.h"
#include "lwm2m.h"
#include "net.h"
#include "runtime/runtime.h"
#include "sensors.h"
#include "systick.h"

#define MANUFACTURER     "embserve-hil"
#define MODEL            "mps2-an385"
#define SERIAL_NUMBER    "AN385-0001"
#define DEVICE_TYPE      "embServe Node"
#define MEMORY_TOTAL_KB  4096      /* data SSRAM: 4 MiB (an Integer in LwM2M; the SDF bridge shows it as a string) */
#define BEARER_ETHERNET  41
#define SENSOR_POLL_MS   20u
#define REBOOT_DELAY_MS  100u     /* lets the 2.04 of the Reboot execute leave first */

/* OMA object 9 Update State / Update Result */
enum { SW_INITIAL = 0, SW_DOWNLOAD_STARTED = 1, SW_DOWNLOADED = 2, SW_DELIVERED = 3, SW_INSTALLED = 4 };
enum {
    RES_INITIAL = 0,
    RES_DOWNLOADING = 1,
    RES_INSTALLED = 2,
    RES_DOWNLOADED_VERIFIED = 3,
    RES_NOT_ENOUGH_STORAGE = 50,
    RES_UNSUPPORTED_PACKAGE = 54,
    RES_UPDATE_ERROR = 57,
    RES_INSTALL_FAILURE = 58,
};


typedef struct {
    uint8_t used;
    uint16_t id;
    uint8_t state;
    uint8_t result;
    uint8_t active;
    char name[32];
    char version[12];
    uint32_t pkg_len;
    char error[64];
} sw_slot_t;

#define MAX_SENSORS 6
typedef struct {
    uint8_t used;
    uint8_t builtin;      /* /3303/0: the board's own temperature sensor */
    uint8_t has_value;    /* a service output has set value */
    int8_t owner;         /* software slot feeding it (3308: fed by it), -1 none */
    uint16_t obj;
    uint16_t inst;
    float value;          /* last service output (3308: the set point written) */
    uint8_t has_range;
    float min, max;       /* 5601/5602: extremes of the values shown */
} sensor_inst_t;

static sw_slot_t g_sw[RT_MAX_SERVICES];
static uint8_t g_pkg[RT_MAX_SERVICES][OBJ_PACKAGE_MAX];
static sensor_inst_t g_sens[MAX_SENSORS];
static char g_err[96];
static int64_t g_time_base;          /* /3/0/13 = base + uptime */
static int64_t g_pmin, g_pmax;       /* /1/0/2, /1/0/3 */
static int g_notification_storing;   /* /1/0/6 */
static uint32_t g_reboot_at;
static uint8_t g_reboot_pending;
static float g_last_temperature;
static uint32_t g_next_sensor_poll;

static const uint16_t g_objects[] = { 1, 3, 4, 9, 15, 3300, 3303, 3308, 35003 };

static const obj_res_t res_server[] = {
    { 0, OBJ_INT, OP_R, 0 }, { 1, OBJ_INT, OP_R | OP_W, 0 }, { 2, OBJ_INT, OP_R | OP_W, 0 },
    { 3, OBJ_INT, OP_R | OP_W, 0 }, { 6, OBJ_BOOL, OP_R | OP_W, 0 }, { 7, OBJ_STRING, OP_R | OP_W, 0 },
    { 8, OBJ_NONE, OP_E, 0 },
};
static const obj_res_t res_device[] = {
    { 0, OBJ_STRING, OP_R, 0 },  { 1, OBJ_STRING, OP_R, 0 },  { 2, OBJ_STRING, OP_R, 0 },
    { 3, OBJ_STRING, OP_R, 0 },  { 4, OBJ_NONE, OP_E, 0 },    { 11, OBJ_INT, OP_R, 1 },
    { 13, OBJ_TIME, OP_R | OP_W, 0 }, { 16, OBJ_STRING, OP_R, 0 }, { 17, OBJ_STRING, OP_R, 0 },
    { 21, OBJ_INT, OP_R, 0 },
};
static const obj_res_t res_conn[] = {
    { 0, OBJ_INT, OP_R, 0 }, { 1, OBJ_INT, OP_R, 1 }, { 2, OBJ_INT, OP_R, 0 }, { 4, OBJ_STRING, OP_R, 1 },
};
static const obj_res_t res_sw[] = {
    { 0, OBJ_STRING, OP_R, 0 }, { 1, OBJ_STRING, OP_R, 0 }, { 2, OBJ_OPAQUE, OP_W, 0 },
    { 4, OBJ_NONE, OP_E, 0 },   { 6, OBJ_NONE, OP_E, 0 },   { 7, OBJ_INT, OP_R, 0 },
    { 9, OBJ_INT, OP_R, 0 },    { 10, OBJ_NONE, OP_E, 0 },  { 11, OBJ_NONE, OP_E, 0 },
    { 12, OBJ_BOOL, OP_R, 0 },
};
static const obj_res_t res_devcap[] = {
    { 0, OBJ_STRING, OP_R, 0 }, { 1, OBJ_INT, OP_R, 0 }, { 2, OBJ_STRING, OP_R, 0 }, { 4, OBJ_BOOL, OP_R, 0 },
};
static const obj_res_t res_sensor[] = {
    { 5601, OBJ_FLOAT, OP_R, 0 }, { 5602, OBJ_FLOAT, OP_R, 0 },
    { 5700, OBJ_FLOAT, OP_R, 0 }, { 5701, OBJ_STRING, OP_R, 0 },
};
/* 3308 Set Point: 5900 feeds the input a service maps to it */
static const obj_res_t res_setpoint[] = { { 5900, OBJ_FLOAT, OP_R | OP_W, 0 } };
static const obj_res_t res_monitor[] = {
    { 27400, OBJ_OBJLNK, OP_R, 0 }, { 27401, OBJ_STRING, OP_R, 0 }, { 27402, OBJ_STRING, OP_R, 0 },
    { 27403, OBJ_STRING, OP_R, 0 }, { 27404, OBJ_STRING, OP_R, 0 },
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static uint8_t fail(uint8_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static uint8_t fail(uint8_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof(g_err), fmt, ap);
    va_end(ap);
    return code;
}

const char *obj_last_error(void) { return g_err; }

/* ------------------------------------------------------------ lookups */

static sw_slot_t *sw_find(uint16_t id)
{
    for (int i = 0; i < RT_MAX_SERVICES; i++)
        if (g_sw[i].used && g_sw[i].id == id)
            return &g_sw[i];
    return NULL;
}

static int sw_index(const sw_slot_t *s) { return (int)(s - g_sw); }

/* /35003 instance of a software slot: the slot number + 1 (0 is the device). */
static sw_slot_t *sw_for_monitor(uint16_t inst)
{
    if (inst == 0 || inst > RT_MAX_SERVICES || !g_sw[inst - 1].used)
        return NULL;
    return &g_sw[inst - 1];
}

static sensor_inst_t *sensor_find(uint16_t obj, uint16_t inst)
{
    for (int i = 0; i < MAX_SENSORS; i++)
        if (g_sens[i].used && g_sens[i].obj == obj && g_sens[i].inst == inst)
            return &g_sens[i];
    return NULL;
}

static void sort_ids(uint16_t *ids, int n)
{
    for (int i = 1; i < n; i++) {
        uint16_t v = ids[i];
        int j = i;
        while (j > 0 && ids[j - 1] > v) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = v;
    }
}

const uint16_t *obj_list(int *count)
{
    *count = COUNT(g_objects);
    return g_objects;
}

int obj_known(uint16_t obj)
{
    for (int i = 0; i < COUNT(g_objects); i++)
        if (g_objects[i] == obj)
            return 1;
    return 0;
}

int obj_listed_empty(uint16_t obj) { return obj == 9; }

int obj_instances(uint16_t obj, uint16_t *ids, int max)
{
    int n = 0;
    switch (obj) {
    case 1:
    case 3:
    case 4:
    case 15:
        if (max > 0)
            ids[n++] = 0;
        break;
    case 9:
        for (int i = 0; i < RT_MAX_SERVICES && n < max; i++)
            if (g_sw[i].used)
                ids[n++] = g_sw[i].id;
        break;
    case 3300:
    case 3303:
    case 3308:
        for (int i = 0; i < MAX_SENSORS && n < max; i++)
            if (g_sens[i].used && g_sens[i].obj == obj)
                ids[n++] = g_sens[i].inst;
        break;
    case 35003:
        if (max > 0)
            ids[n++] = 0;
        for (int i = 0; i < RT_MAX_SERVICES && n < max; i++)
            if (g_sw[i].used)
                ids[n++] = (uint16_t)(i + 1);
        break;
    default:
        break;
    }
    sort_ids(ids, n);
    return n;
}

int obj_instance_exists(uint16_t obj, uint16_t inst)
{
    uint16_t ids[OBJ_MAX_INSTANCES];
    int n = obj_instances(obj, ids, OBJ_MAX_INSTANCES);
    for (int i = 0; i < n; i++)
        if (ids[i] == inst)
            return 1;
    return 0;
}

const obj_res_t *obj_resources(uint16_t obj, int *count)
{
    switch (obj) {
    case 1: *count = COUNT(res_server); return res_server;
    case 3: *count = COUNT(res_device); return res_device;
    case 4: *count = COUNT(res_conn); return res_conn;
    case 9: *count = COUNT(res_sw); return res_sw;
    case 15: *count = COUNT(res_devcap); return res_devcap;
    case 3300:
    case 3303: *count = COUNT(res_sensor); return res_sensor;
    case 3308: *count = COUNT(res_setpoint); return res_setpoint;
    case 35003: *count = COUNT(res_monitor); return res_monitor;
    default: *count = 0; return NULL;
    }
}

const obj_res_t *obj_resource(uint16_t obj, uint16_t res)
{
    int n;
    const obj_res_t *r = obj_resources(obj, &n);
    for (int i = 0; i < n; i++)
        if (r[i].id == res)
            return &r[i];
    return NULL;
}

int obj_res_instances(uint16_t obj, uint16_t inst, uint16_t res, uint16_t *ids, int max)
{
    (void)inst;
    const obj_res_t *r = obj_resource(obj, res);
    if (r == NULL || !r->multiple || max < 1)
        return 0;
    /* every multiple resource of this node has exactly one instance, 0 */
    ids[0] = 0;
    return 1;
}

/* ------------------------------------------------------------ values */

static void set_str(obj_value_t *v, const char *s)
{
    v->type = OBJ_STRING;
    if (s != v->text) {
        strncpy(v->text, s, sizeof(v->text) - 1);
        v->text[sizeof(v->text) - 1] = '\0';
    }
    v->data = (const uint8_t *)v->text;
    v->len = (uint32_t)strlen(v->text);
}

static void set_int(obj_value_t *v, uint8_t type, int64_t i)
{
    v->type = type;
    v->i = i;
}

static float temperature_now(void)
{
    float t = 0.0f;
    sensor_get("temperature", &t);
    return t;
}

/* What 5700 shows: the service's output once one arrived, else the board's sensor. */
static float sensor_value(const sensor_inst_t *s)
{
    return (s->has_value || !s->builtin) ? s->value : temperature_now();
}

/* Keeps 5601/5602 and tells observers; called whenever 5700 may have changed. */
static void sensor_changed(sensor_inst_t *s)
{
    float v = sensor_value(s);
    if (!s->has_range) {
        s->has_range = 1;
        s->min = s->max = v;
    }
    if (v < s->min) {
        s->min = v;
        lwm2m_resource_changed(s->obj, s->inst, 5601);
    }
    if (v > s->max) {
        s->max = v;
        lwm2m_resource_changed(s->obj, s->inst, 5602);
    }
    lwm2m_resource_changed(s->obj, s->inst, 5700);
}

static void format_ip(uint32_t ip, char *out, size_t cap)
{
    snprintf(out, cap, "%u.%u.%u.%u", (unsigned)(ip >> 24) & 255u, (unsigned)(ip >> 16) & 255u,
             (unsigned)(ip >> 8) & 255u, (unsigned)ip & 255u);
}

/* 35003 figures: cpu as a percentage with one decimal, memory in bytes, uptime in seconds. */
static void monitor_value(uint16_t inst, uint16_t res, obj_value_t *v)
{
    rt_stats_t st;
    memset(&st, 0, sizeof(st));
    sw_slot_t *s = sw_for_monitor(inst);
    if (s == NULL) {
        /* the device: totals over the services, uptime since boot */
        for (int i = 0; i < RT_MAX_SERVICES; i++) {
            rt_stats_t one;
            if (g_sw[i].used && rt_stats(g_sw[i].id, &one) == 0) {
                st.cpu_permille += one.cpu_permille;
                st.mem_bytes += one.mem_bytes;
            }
        }
        st.uptime_s = fw_millis() / 1000u;
    } else if (rt_stats(s->id, &st) != 0) {
        memset(&st, 0, sizeof(st));
    }
    switch (res) {
    case 27401:
        snprintf(v->text, sizeof(v->text), "%lu.%lu", (unsigned long)(st.cpu_permille / 10u),
                 (unsigned long)(st.cpu_permille % 10u));
        break;
    case 27402:
        snprintf(v->text, sizeof(v->text), "%lu", (unsigned long)st.mem_bytes);
        break;
    case 27403:
        snprintf(v->text, sizeof(v->text), "%lu", (unsigned long)st.uptime_s);
        break;
    default: /* 27404 */
        if (s && st.error[0])
            snprintf(v->text, sizeof(v->text), "%s", st.error);
        else
            snprintf(v->text, sizeof(v->text), "%s", s ? s->error : "");
        break;
    }
    set_str(v, v->text);
}

uint8_t obj_read(uint16_t obj, uint16_t inst, uint16_t res, uint16_t ri, obj_value_t *v)
{
    memset(v, 0, sizeof(*v));
    if (!obj_instance_exists(obj, inst))
        return fail(COAP_404_NOT_FOUND, "/%u/%u does not exist", obj, inst);
    const obj_res_t *r = obj_resource(obj, res);
    if (r == NULL)
        return fail(COAP_404_NOT_FOUND, "/%u/%u/%u does not exist", obj, inst, res);
    if (!(r->ops & OP_R))
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/%u/%u/%u is not readable", obj, inst, res);
    if (r->multiple && ri != 0)
        return fail(COAP_404_NOT_FOUND, "/%u/%u/%u/%u does not exist", obj, inst, res, ri);

    switch (obj) {
    case 1:
        switch (res) {
        case 0: set_int(v, OBJ_INT, 1); break;
        case 1: set_int(v, OBJ_INT, lwm2m_lifetime()); break;
        case 2: set_int(v, OBJ_INT, g_pmin); break;
        case 3: set_int(v, OBJ_INT, g_pmax); break;
        case 6: set_int(v, OBJ_BOOL, g_notification_storing); break;
        default: set_str(v, "U"); break;
        }
        return 0;
    case 3:
        switch (res) {
        case 0: set_str(v, MANUFACTURER); break;
        case 1: set_str(v, MODEL); break;
        case 2: set_str(v, SERIAL_NUMBER); break;
        case 3: set_str(v, FW_VERSION); break;
        case 11: set_int(v, OBJ_INT, 0); break; /* no error */
        case 13: set_int(v, OBJ_TIME, g_time_base + fw_millis() / 1000u); break;
        case 16: set_str(v, "U"); break;
        case 17: set_str(v, DEVICE_TYPE); break;
        default: set_int(v, OBJ_INT, MEMORY_TOTAL_KB); break;
        }
        return 0;
    case 4:
        switch (res) {
        case 0:
        case 1: set_int(v, OBJ_INT, BEARER_ETHERNET); break;
        case 2: set_int(v, OBJ_INT, 0); break;
        default:
            format_ip(net_local_ip(), v->text, sizeof(v->text));
            set_str(v, v->text);
            break;
        }
        return 0;
    case 9: {
        sw_slot_t *s = sw_find(inst);
        switch (res) {
        case 0: set_str(v, s->name); break;
        case 1: set_str(v, s->version); break;
        case 7: set_int(v, OBJ_INT, s->state); break;
        case 9: set_int(v, OBJ_INT, s->result); break;
        default: set_int(v, OBJ_BOOL, s->active); break;
        }
        return 0;
    }
    case 15:
        switch (res) {
        case 0: set_str(v, "2"); break;          /* DevCapMgmt sensor id 2: temperature */
        case 1: set_int(v, OBJ_INT, 0); break;   /* group 0: sensors */
        case 2: set_str(v, "temperature"); break;
        default: set_int(v, OBJ_BOOL, 1); break; /* 4 Enabled */
        }
        return 0;
    case 3300:
    case 3303: {
        sensor_inst_t *s = sensor_find(obj, inst);
        v->type = OBJ_FLOAT;
        if (res == 5701)
            set_str(v, obj == 3303 ? "Cel" : "");
        else if (res == 5601)
            v->f = s->min;
        else if (res == 5602)
            v->f = s->max;
        else
            v->f = sensor_value(s);
        return 0;
    }
    case 3308:
        v->type = OBJ_FLOAT;
        v->f = sensor_find(obj, inst)->value;
        return 0;
    case 35003:
        if (res == 27400) {
            sw_slot_t *s = sw_for_monitor(inst);
            v->type = OBJ_OBJLNK;
            v->lnk_obj = s ? 9 : 3;
            v->lnk_inst = s ? s->id : 0;
        } else {
            monitor_value(inst, res, v);
        }
        return 0;
    default:
        return fail(COAP_404_NOT_FOUND, "object %u does not exist", obj);
    }
}

/* ------------------------------------------------------------ sensors fed by services */

static sensor_inst_t *sensor_alloc(uint16_t obj, int32_t want_inst)
{
    sensor_inst_t *slot = NULL;
    for (int i = 0; i < MAX_SENSORS && !slot; i++)
        if (!g_sens[i].used)
            slot = &g_sens[i];
    if (slot == NULL)
        return NULL;
    uint16_t inst = 0;
    if (want_inst >= 0) {
        inst = (uint16_t)want_inst;
    } else {
        while (sensor_find(obj, inst))
            inst++;
    }
    memset(slot, 0, sizeof(*slot));
    slot->used = 1;
    slot->obj = obj;
    slot->inst = inst;
    slot->owner = -1;
    return slot;
}

/* The instance of `obj` a service's output mapping feeds: an instance it already
 * has, else the first one nobody feeds, else a new one. `inst` >= 0 when the
 * mapping names an instance instead of "x". */
static sensor_inst_t *sensor_claim(int slot, uint16_t obj, int32_t inst)
{
    sensor_inst_t *s;
    if (inst >= 0) {
        s = sensor_find(obj, (uint16_t)inst);
        if (s && s->owner >= 0 && s->owner != slot)
            return NULL;
    } else {
        s = NULL;
        for (int i = 0; i < MAX_SENSORS && !s; i++)
            if (g_sens[i].used && g_sens[i].obj == obj && g_sens[i].owner == slot)
                s = &g_sens[i];
        for (int i = 0; i < MAX_SENSORS && !s; i++)
            if (g_sens[i].used && g_sens[i].obj == obj && g_sens[i].owner < 0)
                s = &g_sens[i];
    }
    if (s == NULL) {
        s = sensor_alloc(obj, inst);
        if (s == NULL)
            return NULL;
        lwm2m_instances_changed();
    }
    s->owner = (int8_t)slot;
    return s;
}

static void sensors_release(int slot)
{
    for (int i = 0; i < MAX_SENSORS; i++) {
        sensor_inst_t *s = &g_sens[i];
        if (!s->used || s->owner != slot)
            continue;
        if (s->builtin) {
            s->owner = -1;
            s->has_value = 0; /* back to the board's sensor */
            sensor_changed(s);
        } else {
            s->used = 0;
            lwm2m_instance_removed(s->obj, s->inst);
            lwm2m_instances_changed();
        }
    }
}

/* "lwm2m:3303/x/5700" -> obj 3303, inst -1 (x), res 5700; 0 ok */
static int parse_mapping(const char *m, uint16_t *obj, int32_t *inst, uint16_t *res)
{
    unsigned long o, r;
    char *end;
    if (strncmp(m, "lwm2m:", 6) != 0)
        return -1;
    m += 6;
    if (*m == '/')
        m++;
    o = strtoul(m, &end, 10);
    if (end == m || *end != '/' || o > 65535)
        return -1;
    m = end + 1;
    if (*m == 'x') {
        *inst = -1;
        m++;
    } else {
        unsigned long i = strtoul(m, &end, 10);
        if (end == m || i > 65535)
            return -1;
        *inst = (int32_t)i;
        m = end;
    }
    if (*m != '/')
        return -1;
    r = strtoul(m + 1, &end, 10);
    if (end == m + 1 || *end != '\0' || r > 65535)
        return -1;
    *obj = (uint16_t)o;
    *res = (uint16_t)r;
    return 0;
}

static int is_sensor_object(uint16_t obj) { return obj == 3303 || obj == 3300; }

/* Claims the instances a manifest maps outputs to at install, so a server can
 * observe them before the first reading arrives. The manifest was accepted by
 * the runtime; this only looks for the mapping strings in it. */
static void claim_from_manifest(int slot)
{
    const char *pkg = (const char *)g_pkg[slot];
    uint32_t len = g_sw[slot].pkg_len;
    for (uint32_t i = 0; i + 7 < len; i++) {
        if (pkg[i] != '"' || memcmp(pkg + i + 1, "lwm2m:", 6) != 0)
            continue;
        char mapping[40];
        uint32_t n = 0;
        for (uint32_t k = i + 1; k < len && pkg[k] != '"' && n < sizeof(mapping) - 1; k++)
            mapping[n++] = pkg[k];
        mapping[n] = '\0';
        uint16_t obj, res;
        int32_t inst;
        if (parse_mapping(mapping, &obj, &inst, &res) == 0 && is_sensor_object(obj) && res == 5700)
            sensor_claim(slot, obj, inst);
    }
}

/* Claims the Set Point instance of each input mapped to lwm2m:3308/x/5900, the
 * one resource of this node a server writes for a service; any other input
 * mapping is refused (-1, err says which). */
static int claim_inputs(int slot, char *err, size_t cap)
{
    const char *key, *mapping;
    for (int n = 0; (mapping = rt_input_mapping(g_sw[slot].id, n, &key)) != NULL; n++) {
        uint16_t obj, res;
        int32_t inst;
        if (parse_mapping(mapping, &obj, &inst, &res) != 0 || obj != 3308 || res != 5900) {
            snprintf(err, cap, "input '%s': %s is not writable here", key, mapping);
            return -1;
        }
        if (sensor_claim(slot, obj, inst) == NULL) {
            snprintf(err, cap, "input '%s': no free instance for %s", key, mapping);
            return -1;
        }
    }
    return 0;
}

/* The input of the service at software slot `slot` mapped to /obj/inst/res, or NULL. */
static const char *mapped_input(int slot, uint16_t obj, uint16_t inst, uint16_t res)
{
    const char *key, *mapping;
    for (int n = 0; (mapping = rt_input_mapping(g_sw[slot].id, n, &key)) != NULL; n++) {
        uint16_t o, r;
        int32_t i;
        if (parse_mapping(mapping, &o, &i, &r) == 0 && o == obj && r == res && (i < 0 || i == inst))
            return key;
    }
    return NULL;
}

/* A server's write of Set Point Value: on_input of the service whose input is
 * mapped there, with the value in the input's type. Refused (4.05) while the
 * service is not running, and then not stored. */
static uint8_t setpoint_write(uint16_t inst, const obj_value_t *v, int check_only)
{
    sensor_inst_t *si = sensor_find(3308, inst);
    int slot = si->owner;
    const char *key = slot >= 0 ? mapped_input(slot, 3308, inst, 5900) : NULL;
    rt_stats_t st;
    if (key == NULL)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/3308/%u/5900 feeds no service input", inst);
    if (rt_stats(g_sw[slot].id, &st) != 0 || st.state != RT_STATE_RUNNING)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/3308/%u/5900: input '%s' of /9/%u: the service is not running",
                    inst, key, g_sw[slot].id);
    if (check_only)
        return 0;
    int rc = rt_input_number(g_sw[slot].id, key, v->f);
    if (rc == RT_EVALUE)
        return fail(COAP_400_BAD_REQUEST, "/3308/%u/5900: %g does not fit input '%s'", inst, v->f, key);
    if (rc != 0 && rc != RT_EFAULT) /* a fault in on_input is reported in /9 and 35003 */
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/3308/%u/5900: input '%s': %s", inst, key, rt_strerror(rc));
    si->value = (float)v->f;
    lwm2m_resource_changed(3308, inst, 5900);
    return 0;
}

/* ------------------------------------------------------------ /9 lifecycle */

static void sw_changed(sw_slot_t *s, uint16_t res)
{
    lwm2m_resource_changed(9, s->id, res);
}

static void sw_set_state(sw_slot_t *s, uint8_t state, uint8_t result)
{
    if (s->state != state) {
        s->state = state;
        sw_changed(s, 7);
    }
    if (s->result != result) {
        s->result = result;
        sw_changed(s, 9);
    }
}

static void sw_set_active(sw_slot_t *s, uint8_t active)
{
    if (s->active != active) {
        s->active = active;
        sw_changed(s, 12);
    }
}

static void sw_set_error(sw_slot_t *s, const char *msg)
{
    snprintf(s->error, sizeof(s->error), "%s", msg ? msg : "");
    lwm2m_resource_changed(35003, (uint16_t)(sw_index(s) + 1), 27404);
}

/* Back to INITIAL: the runtime forgets the module, the package is dropped. */
static void sw_reset(sw_slot_t *s)
{
    int slot = sw_index(s);
    if (s->state == SW_INSTALLED)
        rt_remove(s->id);
    sensors_release(slot);
    s->pkg_len = 0;
    s->name[0] = '\0';
    s->version[0] = '\0';
    sw_set_active(s, 0);
    sw_set_state(s, SW_INITIAL, RES_INITIAL);
    sw_changed(s, 0);
    sw_changed(s, 1);
}

static uint8_t sw_write_package(sw_slot_t *s, const obj_value_t *v, int check_only)
{
    if (s->state == SW_INSTALLED)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/9/%u holds an installed package: uninstall it first", s->id);
    if (v->len > OBJ_PACKAGE_MAX)
        return fail(COAP_413_ENTITY_TOO_LARGE, "package of %lu bytes exceeds the %u-byte limit",
                    (unsigned long)v->len, (unsigned)OBJ_PACKAGE_MAX);
    if (check_only)
        return 0;
    int slot = sw_index(s);
    if (v->len == 0) {
        sw_reset(s);
        return 0;
    }
    memcpy(g_pkg[slot], v->data, v->len);
    s->pkg_len = v->len;
    sw_set_error(s, "");
    sw_set_state(s, SW_DELIVERED, RES_DOWNLOADED_VERIFIED);
    return 0;
}

/* Update Result for an install failure */
static uint8_t install_result(int rc)
{
    switch (rc) {
    case RT_EINVAL: return RES_UNSUPPORTED_PACKAGE; /* bad manifest or module */
    case RT_EFAULT: return RES_UPDATE_ERROR;
    default: return RES_INSTALL_FAILURE;           /* no room, no slot, ... */
    }
}

static uint8_t sw_install(sw_slot_t *s)
{
    if (s->state != SW_DELIVERED)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/9/%u: install needs a delivered package (update state %u)", s->id,
                    s->state);
    char err[64] = "";
    int rc = rt_install(s->id, g_pkg[sw_index(s)], s->pkg_len, err, sizeof(err));
    if (rc != 0) {
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "install failed (%d)", rc);
        lwm2m_log("install of /9/%u failed: %s", s->id, err);
        sw_set_error(s, err);
        sw_set_state(s, SW_DELIVERED, install_result(rc));
        return 0; /* the execute itself succeeded; the outcome is in Update Result */
    }
    if (claim_inputs(sw_index(s), err, sizeof(err)) != 0) {
        rt_remove(s->id);
        sensors_release(sw_index(s));
        lwm2m_log("install of /9/%u failed: %s", s->id, err);
        sw_set_error(s, err);
        sw_set_state(s, SW_DELIVERED, install_result(RT_EINVAL));
        return 0;
    }
    rt_stats_t st;
    if (rt_stats(s->id, &st) == 0) {
        snprintf(s->name, sizeof(s->name), "%s", st.name);
        snprintf(s->version, sizeof(s->version), "%d", st.version);
        sw_changed(s, 0);
        sw_changed(s, 1);
    }
    sw_set_error(s, "");
    sw_set_state(s, SW_INSTALLED, RES_INSTALLED);
    claim_from_manifest(sw_index(s));
    lwm2m_log("installed /9/%u (%s v%s)", s->id, s->name, s->version);
    return 0;
}

static uint8_t sw_activate(sw_slot_t *s)
{
    if (s->state != SW_INSTALLED)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/9/%u: activate needs an installed package (update state %u)", s->id,
                    s->state);
    if (s->active)
        return 0;
    int rc = rt_activate(s->id);
    if (rc != 0) {
        /* the execute was valid; the service did not start: say why where the server looks */
        char msg[64];
        snprintf(msg, sizeof(msg), "activate failed: %s", rt_strerror(rc));
        sw_set_error(s, msg);
        sw_set_state(s, SW_INSTALLED, RES_UPDATE_ERROR);
        return fail(COAP_500_INTERNAL_ERROR, "/9/%u: %s", s->id, msg);
    }
    sw_set_active(s, 1);
    return 0;
}

static uint8_t sw_deactivate(sw_slot_t *s)
{
    if (s->state != SW_INSTALLED)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/9/%u: nothing installed to deactivate", s->id);
    if (!s->active)
        return 0;
    rt_deactivate(s->id);
    sw_set_active(s, 0);
    return 0;
}

/* ------------------------------------------------------------ write / execute / create / delete */

uint8_t obj_write(uint16_t obj, uint16_t inst, uint16_t res, const obj_value_t *v, int check_only)
{
    if (!obj_instance_exists(obj, inst))
        return fail(COAP_404_NOT_FOUND, "/%u/%u does not exist", obj, inst);
    const obj_res_t *r = obj_resource(obj, res);
    if (r == NULL)
        return fail(COAP_404_NOT_FOUND, "/%u/%u/%u does not exist", obj, inst, res);
    if (!(r->ops & OP_W))
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/%u/%u/%u is not writable", obj, inst, res);
    if (v->type != r->type)
        return fail(COAP_400_BAD_REQUEST, "/%u/%u/%u: value of the wrong type", obj, inst, res);

    if (obj == 1) {
        if (res == 1 && v->i <= 0)
            return fail(COAP_400_BAD_REQUEST, "lifetime must be a positive number of seconds");
        if ((res == 2 || res == 3) && v->i < 0)
            return fail(COAP_400_BAD_REQUEST, "a period cannot be negative");
        if (res == 7 && !(v->len == 1 && v->data[0] == 'U'))
            return fail(COAP_400_BAD_REQUEST, "only the UDP binding (U) is supported");
        if (check_only)
            return 0;
        switch (res) {
        case 1: lwm2m_set_lifetime((uint32_t)v->i); break;
        case 2: g_pmin = v->i; break;
        case 3: g_pmax = v->i; break;
        case 6: g_notification_storing = (int)v->i; break;
        default: break;
        }
        return 0;
    }
    if (obj == 3) { /* 13 Current Time */
        if (!check_only) {
            g_time_base = v->i - (int64_t)(fw_millis() / 1000u);
            lwm2m_resource_changed(3, 0, 13);
        }
        return 0;
    }
    if (obj == 9) /* 2 Package */
        return sw_write_package(sw_find(inst), v, check_only);
    if (obj == 3308) /* 5900 Set Point Value */
        return setpoint_write(inst, v, check_only);
    return fail(COAP_405_METHOD_NOT_ALLOWED, "/%u/%u/%u is not writable", obj, inst, res);
}

uint8_t obj_execute(uint16_t obj, uint16_t inst, uint16_t res, const uint8_t *arg, uint32_t len)
{
    (void)arg;
    (void)len;
    if (!obj_instance_exists(obj, inst))
        return fail(COAP_404_NOT_FOUND, "/%u/%u does not exist", obj, inst);
    const obj_res_t *r = obj_resource(obj, res);
    if (r == NULL)
        return fail(COAP_404_NOT_FOUND, "/%u/%u/%u does not exist", obj, inst, res);
    if (!(r->ops & OP_E))
        return fail(COAP_405_METHOD_NOT_ALLOWED, "/%u/%u/%u is not executable", obj, inst, res);
    if (obj == 1) { /* 8 Registration Update Trigger */
        lwm2m_trigger_update();
        return 0;
    }
    if (obj == 3) { /* 4 Reboot */
        g_reboot_pending = 1;
        g_reboot_at = fw_millis() + REBOOT_DELAY_MS;
        return 0;
    }
    sw_slot_t *s = sw_find(inst);
    switch (res) {
    case 4: return sw_install(s);
    case 6:
        sw_reset(s);
        return 0;
    case 10: return sw_activate(s);
    default: return sw_deactivate(s); /* 11 */
    }
}

uint8_t obj_create(uint16_t obj, int32_t inst, uint16_t *created)
{
    if (obj != 9)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "object %u does not take new instances", obj);
    if (inst > 65534)
        return fail(COAP_400_BAD_REQUEST, "instance id %ld is reserved", (long)inst);
    if (inst >= 0 && sw_find((uint16_t)inst))
        return fail(COAP_400_BAD_REQUEST, "/9/%ld already exists", (long)inst);
    sw_slot_t *s = NULL;
    for (int i = 0; i < RT_MAX_SERVICES && !s; i++)
        if (!g_sw[i].used)
            s = &g_sw[i];
    if (s == NULL)
        return fail(COAP_500_INTERNAL_ERROR, "all %d software slots are in use", RT_MAX_SERVICES);
    uint16_t id = (uint16_t)inst;
    if (inst < 0) {
        id = OBJ_SW_FIRST_ID;
        while (sw_find(id))
            id++;
    }
    memset(s, 0, sizeof(*s));
    s->used = 1;
    s->id = id;
    *created = id;
    lwm2m_instances_changed();
    return 0;
}

uint8_t obj_delete(uint16_t obj, uint16_t inst)
{
    if (!obj_known(obj))
        return fail(COAP_404_NOT_FOUND, "object %u does not exist", obj);
    if (obj != 9)
        return fail(COAP_405_METHOD_NOT_ALLOWED, "instances of object %u cannot be deleted", obj);
    sw_slot_t *s = sw_find(inst);
    if (s == NULL)
        return fail(COAP_404_NOT_FOUND, "/9/%u does not exist", inst);
    int slot = sw_index(s);
    if (s->state == SW_INSTALLED)
        rt_remove(s->id);
    sensors_release(slot);
    s->used = 0;
    lwm2m_instance_removed(9, inst);
    lwm2m_instance_removed(35003, (uint16_t)(slot + 1));
    lwm2m_instances_changed();
    return 0;
}

/* ------------------------------------------------------------ runtime callbacks */

static sw_slot_t *sw_by_runtime_id(int inst_id)
{
    if (inst_id < 0 || inst_id > 65535)
        return NULL;
    return sw_find((uint16_t)inst_id);
}

static void output_text(int type, const void *data, uint32_t len, char *out, size_t cap)
{
    if (type == 1 && len >= 4) {
        float f;
        memcpy(&f, data, 4);
        snprintf(out, cap, "%g", (double)f);
    } else if (type == 0 && len >= 4) {
        int32_t i;
        memcpy(&i, data, 4);
        snprintf(out, cap, "%ld", (long)i);
    } else {
        snprintf(out, cap, "<%lu bytes>", (unsigned long)len);
    }
}

void fw_service_output(int inst_id, const char *key, int type, const void *data, uint32_t len, const char *mapping)
{
    sw_slot_t *s = sw_by_runtime_id(inst_id);
    uint16_t obj, res;
    int32_t inst;
    float value;
    if (s && mapping && parse_mapping(mapping, &obj, &inst, &res) == 0 && is_sensor_object(obj) && res == 5700 &&
        len >= 4 && (type == 0 || type == 1)) { /* several values: the first one */
        if (type == 1) {
            memcpy(&value, data, 4);
        } else {
            int32_t i;
            memcpy(&i, data, 4);
            value = (float)i;
        }
        sensor_inst_t *si = sensor_claim(sw_index(s), obj, inst);
        if (si) {
            si->value = value;
            si->has_value = 1;
            sensor_changed(si);
            return;
        }
    }
    char text[24];
    output_text(type, data, len, text, sizeof(text));
    if (mapping && mapping[0])
        lwm2m_log("output %s=%s of /9/%d: mapping '%s' is not served by this node", key ? key : "?", text, inst_id,
                  mapping);
    else
        lwm2m_log("output %s=%s of /9/%d (no data model mapping)", key ? key : "?", text, inst_id);
}

void fw_service_event(int inst_id, int state, const char *error)
{
    sw_slot_t *s = sw_by_runtime_id(inst_id);
    if (s == NULL || s->state != SW_INSTALLED)
        return;
    switch (state) {
    case RT_STATE_RUNNING:
        sw_set_active(s, 1);
        break;
    case RT_STATE_STOPPED:
        sw_set_active(s, 0);
        break;
    case RT_STATE_FAULTED:
        lwm2m_log("service /9/%d faulted: %s", inst_id, error ? error : "");
        sw_set_error(s, error && error[0] ? error : "service faulted");
        sw_set_active(s, 0);
        sw_set_state(s, SW_INSTALLED, RES_UPDATE_ERROR);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ life cycle */

void objects_init(void)
{
    memset(g_sw, 0, sizeof(g_sw));
    memset(g_sens, 0, sizeof(g_sens));
    sensor_inst_t *t = sensor_alloc(3303, 0);
    t->builtin = 1;
    sensor_changed(t); /* starts the min/max range */
    g_last_temperature = temperature_now();
    g_time_base = 0;
    g_pmin = 0;
    g_pmax = 0;
    g_notification_storing = 0;
    g_reboot_pending = 0;
    g_err[0] = '\0';
}

void objects_poll(uint32_t now_ms)
{
    if ((int32_t)(now_ms - g_next_sensor_poll) >= 0) {
        g_next_sensor_poll = now_ms + SENSOR_POLL_MS;
        float t = temperature_now();
        if (t != g_last_temperature) {
            g_last_temperature = t;
            for (int i = 0; i < MAX_SENSORS; i++)
                if (g_sens[i].used && g_sens[i].builtin && !g_sens[i].has_value)
                    sensor_changed(&g_sens[i]);
        }
    }
    if (g_reboot_pending && (int32_t)(now_ms - g_reboot_at) >= 0) {
        lwm2m_log("reboot requested by the server");
        lwm2m_deregister();
        board_reset();
    }
}
