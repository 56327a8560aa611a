/* LwM2M client: registration state machine and the device management interface. */
#include "lwm2m.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "bootseed.h"
#include "coap.h"
#include "net.h"
#include "objects.h"
#include "shell.h"
#include "systick.h"
#include "tlv.h"

#define REGISTER_BACKOFF_FIRST_MS 5000u
#define REGISTER_BACKOFF_MAX_MS   60000u
#define DEREGISTER_WAIT_MS        300u
#define LINKS_MAX                 512
#define MAX_LOCATION              4
#define LOCATION_LEN              24
#define MAX_ATTRS                 16

enum { ST_IDLE, ST_REGISTERING, ST_REGISTERED, ST_BACKOFF };

typedef struct {
    uint8_t depth;     /* 0 = root .. 4 = resource instance */
    uint16_t id[4];
} lpath_t;

typedef struct {
    uint8_t used;
    char path[COAP_OBS_PATH_LEN];
    int32_t pmin, pmax;   /* seconds, -1 unset */
} attr_t;

static struct {
    uint8_t state;
    uint8_t configured;
    coap_peer_t server;
    char endpoint[LWM2M_MAX_ENDPOINT + 1];
    char location[MAX_LOCATION][LOCATION_LEN];
    uint8_t n_location;
    uint32_t lifetime;
    uint8_t lifetime_dirty;
    uint8_t links_dirty;
    uint8_t update_requested;
    uint8_t update_in_flight;
    uint32_t next_update_ms;
    uint32_t retry_ms;
    uint32_t backoff_ms;
    uint32_t register_sent_ms;
} g;

/* distinct callback arguments, so each kind of exchange can be cancelled alone */
static uint8_t tag_register, tag_update, tag_deregister;
static uint8_t g_notify_pending[COAP_MAX_OBSERVERS];
static attr_t g_attrs[MAX_ATTRS];
static uint8_t g_req_payload[LINKS_MAX];
static uint8_t g_ntf_payload[COAP_MAX_PAYLOAD];
static coap_pdu_t g_req;
static coap_pdu_t g_ntf;
static int g_udp_bound;

static void start_register(uint32_t now);

static int due(uint32_t now, uint32_t t) { return (int32_t)(now - t) >= 0; }

void lwm2m_log(const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fw_console_line("lwm2m", line);
}

static void format_ip(uint32_t ip, char *out, size_t cap)
{
    snprintf(out, cap, "%u.%u.%u.%u", (unsigned)(ip >> 24) & 255u, (unsigned)(ip >> 16) & 255u,
             (unsigned)(ip >> 8) & 255u, (unsigned)ip & 255u);
}

/* ------------------------------------------------------------ transport */

static int udp_tx(const coap_peer_t *to, const uint8_t *data, uint16_t len)
{
    return udp_send(to->ip, to->port, LWM2M_LOCAL_PORT, data, len);
}

static void udp_rx(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *data, uint16_t len)
{
    (void)dst_port;
    coap_peer_t from = { src_ip, src_port };
    coap_input(&from, data, len, fw_millis());
}

/* ------------------------------------------------------------ paths and formats */

static int parse_path(const coap_msg_t *req, lpath_t *p)
{
    memset(p, 0, sizeof(*p));
    for (const coap_option_t *o = coap_find_option(req, COAP_OPT_URI_PATH, NULL); o;
         o = coap_find_option(req, COAP_OPT_URI_PATH, o)) {
        if (o->len == 0)
            continue; /* "/3/0/" */
        if (p->depth == 4 || o->len > 5)
            return -1;
        uint32_t v = 0;
        for (uint16_t i = 0; i < o->len; i++) {
            if (o->val[i] < '0' || o->val[i] > '9')
                return -1;
            v = v * 10u + (uint32_t)(o->val[i] - '0');
        }
        if (v > 65535u)
            return -1;
        p->id[p->depth++] = (uint16_t)v;
    }
    return 0;
}

static void path_text(const lpath_t *p, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (uint8_t i = 0; i < p->depth && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "/%u", p->id[i]);
    if (p->depth == 0)
        snprintf(out, cap, "/");
}

static int path_from_text(const char *s, lpath_t *p)
{
    memset(p, 0, sizeof(*p));
    while (*s == '/') {
        s++;
        if (*s == '\0')
            break;
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v > 65535 || p->depth == 4)
            return -1;
        p->id[p->depth++] = (uint16_t)v;
        s = end;
    }
    return *s == '\0' ? 0 : -1;
}

static int is_tlv(uint16_t cf) { return cf == COAP_CF_LWM2M_TLV || cf == COAP_CF_LWM2M_TLV_OLD; }

/* ------------------------------------------------------------ rendering (read, notify) */

static void tlv_value(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, const obj_value_t *v)
{
    switch (v->type) {
    case OBJ_STRING:
    case OBJ_OPAQUE: tlv_put(w, kind, id, v->data, v->len); break;
    case OBJ_INT:
    case OBJ_TIME: tlv_put_int(w, kind, id, v->i); break;
    case OBJ_FLOAT: tlv_put_float(w, kind, id, v->f); break;
    case OBJ_BOOL: tlv_put_bool(w, kind, id, (int)v->i); break;
    case OBJ_OBJLNK: tlv_put_objlnk(w, kind, id, v->lnk_obj, v->lnk_inst); break;
    default: break;
    }
}

static uint8_t tlv_resource(tlv_writer_t *w, uint16_t obj, uint16_t inst, const obj_res_t *r)
{
    obj_value_t v;
    uint8_t rc;
    if (!r->multiple) {
        if ((rc = obj_read(obj, inst, r->id, 0, &v)) != 0)
            return rc;
        tlv_value(w, TLV_RESOURCE, r->id, &v);
        return 0;
    }
    uint16_t ris[8];
    int n = obj_res_instances(obj, inst, r->id, ris, 8);
    uint32_t mark = tlv_begin(w);
    for (int i = 0; i < n; i++) {
        if ((rc = obj_read(obj, inst, r->id, ris[i], &v)) != 0)
            return rc;
        tlv_value(w, TLV_RESOURCE_INSTANCE, ris[i], &v);
    }
    tlv_end(w, mark, TLV_MULTIPLE_RESOURCE, r->id);
    return 0;
}

static uint8_t tlv_instance(tlv_writer_t *w, uint16_t obj, uint16_t inst)
{
    int n;
    const obj_res_t *res = obj_resources(obj, &n);
    for (int i = 0; i < n; i++) {
        if (!(res[i].ops & OP_R))
            continue;
        uint8_t rc = tlv_resource(w, obj, inst, &res[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* Decimal text of an int64 without relying on printf's long long support. */
static int int64_text(int64_t v, char *out, size_t cap)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (u % 10u));
        u /= 10u;
    } while (u && n < (int)sizeof(tmp));
    int len = 0;
    if (v < 0 && (size_t)len + 1 < cap)
        out[len++] = '-';
    while (n && (size_t)len + 1 < cap)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

static int value_text(const obj_value_t *v, char *out, size_t cap)
{
    switch (v->type) {
    case OBJ_INT:
    case OBJ_TIME: return int64_text(v->i, out, cap);
    case OBJ_BOOL: return snprintf(out, cap, "%d", v->i ? 1 : 0);
    case OBJ_FLOAT:
        /* a float-precise value prints with float precision: 21.3f is "21.3" */
        if ((double)(float)v->f == v->f)
            return snprintf(out, cap, "%.7g", v->f);
        return snprintf(out, cap, "%.15g", v->f);
    case OBJ_OBJLNK: return snprintf(out, cap, "%u:%u", v->lnk_obj, v->lnk_inst);
    default: return -1;
    }
}

/* Renders a read of `p` in format `fmt` into out->payload; sets Content-Format. */
static uint8_t render(const lpath_t *p, uint16_t fmt, coap_pdu_t *out, char *why, size_t whylen)
{
    if (p->depth == 0) {
        snprintf(why, whylen, "read of the root is not supported");
        return COAP_405_METHOD_NOT_ALLOWED;
    }
    uint16_t obj = p->id[0];
    if (!obj_known(obj)) {
        snprintf(why, whylen, "object %u does not exist", obj);
        return COAP_404_NOT_FOUND;
    }
    if (p->depth >= 2 && !obj_instance_exists(obj, p->id[1])) {
        snprintf(why, whylen, "/%u/%u does not exist", obj, p->id[1]);
        return COAP_404_NOT_FOUND;
    }
    const obj_res_t *r = NULL;
    if (p->depth >= 3) {
        r = obj_resource(obj, p->id[2]);
        if (r == NULL) {
            snprintf(why, whylen, "/%u/%u/%u does not exist", obj, p->id[1], p->id[2]);
            return COAP_404_NOT_FOUND;
        }
        if (!(r->ops & OP_R)) {
            snprintf(why, whylen, "/%u/%u/%u is not readable", obj, p->id[1], p->id[2]);
            return COAP_405_METHOD_NOT_ALLOWED;
        }
        if (p->depth == 4 && !r->multiple) {
            snprintf(why, whylen, "/%u/%u/%u is a single resource: it has no instance %u", obj, p->id[1], p->id[2],
                     p->id[3]);
            return COAP_404_NOT_FOUND;
        }
    }
    if (fmt == COAP_CF_NONE)
        fmt = COAP_CF_LWM2M_TLV;
    int single = p->depth == 4 || (p->depth == 3 && !r->multiple);
    uint8_t rc;
    obj_value_t v;

    if (fmt == COAP_CF_TEXT || fmt == COAP_CF_OPAQUE) {
        if (!single) {
            snprintf(why, whylen, "content format %u needs a single resource; use TLV (11542)", fmt);
            return COAP_406_NOT_ACCEPTABLE;
        }
        if ((rc = obj_read(obj, p->id[1], p->id[2], p->depth == 4 ? p->id[3] : 0, &v)) != 0) {
            snprintf(why, whylen, "%s", obj_last_error());
            return rc;
        }
        if (fmt == COAP_CF_OPAQUE || v.type == OBJ_STRING) {
            if (fmt == COAP_CF_OPAQUE && v.type != OBJ_OPAQUE) {
                snprintf(why, whylen, "application/octet-stream is only for opaque resources");
                return COAP_406_NOT_ACCEPTABLE;
            }
            if (coap_pdu_set_payload(out, v.data, (uint16_t)(v.len > 0xFFFFu ? 0xFFFFu : v.len)) < 0) {
                snprintf(why, whylen, "value too large");
                return COAP_500_INTERNAL_ERROR;
            }
        } else {
            int n = value_text(&v, (char *)out->payload, out->payload_cap);
            if (n < 0) {
                snprintf(why, whylen, "an opaque resource has no text/plain form; ask for 42 or TLV");
                return COAP_406_NOT_ACCEPTABLE;
            }
            out->payload_len = (uint16_t)n;
        }
        coap_pdu_add_uint(out, COAP_OPT_CONTENT_FORMAT, fmt);
        return 0;
    }
    if (!is_tlv(fmt)) {
        snprintf(why, whylen, "content format %u is not supported; use TLV (11542) or text/plain (0)", fmt);
        return COAP_406_NOT_ACCEPTABLE;
    }
    tlv_writer_t w;
    tlv_writer_init(&w, out->payload, out->payload_cap);
    rc = 0;
    switch (p->depth) {
    case 1: {
        uint16_t ids[OBJ_MAX_INSTANCES];
        int n = obj_instances(obj, ids, OBJ_MAX_INSTANCES);
        for (int i = 0; i < n && !rc; i++) {
            uint32_t mark = tlv_begin(&w);
            rc = tlv_instance(&w, obj, ids[i]);
            tlv_end(&w, mark, TLV_OBJECT_INSTANCE, ids[i]);
        }
        break;
    }
    case 2: rc = tlv_instance(&w, obj, p->id[1]); break;
    case 3: rc = tlv_resource(&w, obj, p->id[1], r); break;
    default:
        if ((rc = obj_read(obj, p->id[1], p->id[2], p->id[3], &v)) == 0)
            tlv_value(&w, TLV_RESOURCE_INSTANCE, p->id[3], &v);
        break;
    }
    if (rc) {
        snprintf(why, whylen, "%s", obj_last_error());
        return rc;
    }
    if (w.err) {
        snprintf(why, whylen, "content larger than %u bytes", out->payload_cap);
        return COAP_500_INTERNAL_ERROR;
    }
    out->payload_len = (uint16_t)w.len;
    coap_pdu_add_uint(out, COAP_OPT_CONTENT_FORMAT, fmt);
    return 0;
}

/* ------------------------------------------------------------ attributes (pmin/pmax) */

static attr_t *attr_find(const char *path)
{
    for (int i = 0; i < MAX_ATTRS; i++)
        if (g_attrs[i].used && strcmp(g_attrs[i].path, path) == 0)
            return &g_attrs[i];
    return NULL;
}

/* pmin/pmax in force for `path`: its own, else inherited from the instance and
 * object levels, else the server defaults /1/0/2 and /1/0/3. */
static void attrs_for(const char *path, int32_t *pmin, int32_t *pmax)
{
    lpath_t p;
    char text[COAP_OBS_PATH_LEN];
    obj_value_t v;
    *pmin = -1;
    *pmax = -1;
    if (path_from_text(path, &p) == 0) {
        for (int d = p.depth; d >= 1 && (*pmin < 0 || *pmax < 0); d--) {
            lpath_t up = p;
            up.depth = (uint8_t)d;
            path_text(&up, text, sizeof(text));
            attr_t *a = attr_find(text);
            if (a && *pmin < 0)
                *pmin = a->pmin;
            if (a && *pmax < 0)
                *pmax = a->pmax;
        }
    }
    if (*pmin < 0)
        *pmin = obj_read(1, 0, 2, 0, &v) == 0 ? (int32_t)v.i : 0;
    if (*pmax < 0)
        *pmax = obj_read(1, 0, 3, 0, &v) == 0 ? (int32_t)v.i : 0;
}

/* Drops the attributes of `p` and everything below it (an instance that went away). */
static void attrs_forget(const lpath_t *p)
{
    char prefix[COAP_OBS_PATH_LEN];
    path_text(p, prefix, sizeof(prefix));
    size_t n = strlen(prefix);
    for (int i = 0; i < MAX_ATTRS; i++)
        if (g_attrs[i].used && strncmp(g_attrs[i].path, prefix, n) == 0 &&
            (g_attrs[i].path[n] == '\0' || g_attrs[i].path[n] == '/'))
            g_attrs[i].used = 0;
}

static int parse_u31(const uint8_t *s, uint16_t len, int32_t *out)
{
    int64_t v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (uint16_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 0x7FFFFFFF)
        return -1;
    *out = (int32_t)v;
    return 0;
}

static uint8_t write_attributes(const lpath_t *p, const coap_msg_t *req, char *why, size_t whylen)
{
    char path[COAP_OBS_PATH_LEN];
    if (p->depth == 0) {
        snprintf(why, whylen, "attributes need an object, instance or resource path");
        return COAP_405_METHOD_NOT_ALLOWED;
    }
    uint16_t obj = p->id[0];
    if (!obj_known(obj) || (p->depth >= 2 && !obj_instance_exists(obj, p->id[1])) ||
        (p->depth >= 3 && obj_resource(obj, p->id[2]) == NULL)) {
        path_text(p, path, sizeof(path));
        snprintf(why, whylen, "%s does not exist", path);
        return COAP_404_NOT_FOUND;
    }
    path_text(p, path, sizeof(path));
    int32_t pmin = -2, pmax = -2; /* -2: not mentioned, -1: cleared */
    for (const coap_option_t *o = coap_find_option(req, COAP_OPT_URI_QUERY, NULL); o;
         o = coap_find_option(req, COAP_OPT_URI_QUERY, o)) {
        const uint8_t *eq = memchr(o->val, '=', o->len);
        uint16_t nlen = eq ? (uint16_t)(eq - o->val) : o->len;
        const uint8_t *val = eq ? eq + 1 : NULL;
        uint16_t vlen = eq ? (uint16_t)(o->len - nlen - 1) : 0;
        int32_t *slot = NULL;
        if (nlen == 4 && memcmp(o->val, "pmin", 4) == 0)
            slot = &pmin;
        else if (nlen == 4 && memcmp(o->val, "pmax", 4) == 0)
            slot = &pmax;
        if (slot) {
            if (val == NULL)
                *slot = -1;
            else if (parse_u31(val, vlen, slot) < 0) {
                snprintf(why, whylen, "attribute %.*s needs a whole number of seconds", (int)nlen, (const char *)o->val);
                return COAP_400_BAD_REQUEST;
            }
            continue;
        }
        /* gt/lt/st/epmin/epmax are accepted but notifications only follow pmin/pmax */
        static const char *const accepted[] = { "gt", "lt", "st", "epmin", "epmax" };
        int ok = 0;
        for (size_t k = 0; k < sizeof(accepted) / sizeof(accepted[0]); k++)
            if (strlen(accepted[k]) == nlen && memcmp(o->val, accepted[k], nlen) == 0)
                ok = 1;
        if (!ok) {
            snprintf(why, whylen, "unknown attribute '%.*s'", (int)nlen, (const char *)o->val);
            return COAP_400_BAD_REQUEST;
        }
    }
    attr_t *a = attr_find(path);
    if (a == NULL) {
        for (int i = 0; i < MAX_ATTRS && !a; i++)
            if (!g_attrs[i].used)
                a = &g_attrs[i];
        if (a == NULL) {
            snprintf(why, whylen, "no room for attributes of another path");
            return COAP_500_INTERNAL_ERROR;
        }
        memset(a, 0, sizeof(*a));
        a->used = 1;
        a->pmin = a->pmax = -1;
        snprintf(a->path, sizeof(a->path), "%s", path);
    }
    if (pmin != -2)
        a->pmin = pmin;
    if (pmax != -2)
        a->pmax = pmax;
    if (a->pmin < 0 && a->pmax < 0)
        a->used = 0;
    return COAP_204_CHANGED;
}

/* ------------------------------------------------------------ discover */

static int links_append(coap_pdu_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int links_append(coap_pdu_t *out, const char *fmt, ...)
{
    size_t room = (size_t)(out->payload_cap - out->payload_len);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)out->payload + out->payload_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        return -1;
    out->payload_len = (uint16_t)(out->payload_len + n);
    return 0;
}

static int link_attrs(coap_pdu_t *out, const char *path)
{
    attr_t *a = attr_find(path);
    if (a && a->pmin >= 0 && links_append(out, ";pmin=%ld", (long)a->pmin) < 0)
        return -1;
    if (a && a->pmax >= 0 && links_append(out, ";pmax=%ld", (long)a->pmax) < 0)
        return -1;
    return 0;
}

static int discover_resources(coap_pdu_t *out, uint16_t obj, uint16_t inst, int only_res)
{
    int n;
    const obj_res_t *res = obj_resources(obj, &n);
    for (int i = 0; i < n; i++) {
        if (only_res >= 0 && res[i].id != only_res)
            continue;
        char path[COAP_OBS_PATH_LEN];
        snprintf(path, sizeof(path), "/%u/%u/%u", obj, inst, res[i].id);
        if (links_append(out, "%s<%s>", out->payload_len ? "," : "", path) < 0)
            return -1;
        if (res[i].multiple) {
            uint16_t ris[8];
            if (links_append(out, ";dim=%d", obj_res_instances(obj, inst, res[i].id, ris, 8)) < 0)
                return -1;
        }
        if (link_attrs(out, path) < 0)
            return -1;
    }
    return 0;
}

static uint8_t discover(const lpath_t *p, coap_pdu_t *out, char *why, size_t whylen)
{
    if (p->depth == 0 || p->depth == 4) {
        snprintf(why, whylen, "discover works on an object, instance or resource");
        return COAP_400_BAD_REQUEST;
    }
    uint16_t obj = p->id[0];
    if (!obj_known(obj)) {
        snprintf(why, whylen, "object %u does not exist", obj);
        return COAP_404_NOT_FOUND;
    }
    if (p->depth >= 2 && !obj_instance_exists(obj, p->id[1])) {
        snprintf(why, whylen, "/%u/%u does not exist", obj, p->id[1]);
        return COAP_404_NOT_FOUND;
    }
    if (p->depth == 3 && obj_resource(obj, p->id[2]) == NULL) {
        snprintf(why, whylen, "/%u/%u/%u does not exist", obj, p->id[1], p->id[2]);
        return COAP_404_NOT_FOUND;
    }
    char path[COAP_OBS_PATH_LEN];
    int bad = 0;
    if (p->depth == 1) {
        snprintf(path, sizeof(path), "/%u", obj);
        bad |= links_append(out, "<%s>", path) | link_attrs(out, path);
        uint16_t ids[OBJ_MAX_INSTANCES];
        int n = obj_instances(obj, ids, OBJ_MAX_INSTANCES);
        for (int i = 0; i < n && !bad; i++) {
            snprintf(path, sizeof(path), "/%u/%u", obj, ids[i]);
            bad |= links_append(out, ",<%s>", path) | link_attrs(out, path);
            bad |= discover_resources(out, obj, ids[i], -1);
        }
    } else if (p->depth == 2) {
        snprintf(path, sizeof(path), "/%u/%u", obj, p->id[1]);
        bad |= links_append(out, "<%s>", path) | link_attrs(out, path);
        bad |= discover_resources(out, obj, p->id[1], -1);
    } else {
        bad |= discover_resources(out, obj, p->id[1], p->id[2]);
    }
    if (bad) {
        snprintf(why, whylen, "link list larger than %u bytes", out->payload_cap);
        return COAP_500_INTERNAL_ERROR;
    }
    coap_pdu_add_uint(out, COAP_OPT_CONTENT_FORMAT, COAP_CF_LINK);
    return COAP_205_CONTENT;
}

/* ------------------------------------------------------------ write / create */

/* Value of resource `r` from a TLV; 0 ok or 4.00. */
static uint8_t decode_tlv_value(const obj_res_t *r, const tlv_t *t, obj_value_t *v)
{
    memset(v, 0, sizeof(*v));
    v->type = r->type;
    switch (r->type) {
    case OBJ_STRING:
    case OBJ_OPAQUE:
        v->data = t->value;
        v->len = t->len;
        return 0;
    case OBJ_INT:
    case OBJ_TIME: return tlv_get_int(t, &v->i) == 0 ? 0 : COAP_400_BAD_REQUEST;
    case OBJ_FLOAT: return tlv_get_float(t, &v->f) == 0 ? 0 : COAP_400_BAD_REQUEST;
    case OBJ_BOOL: {
        int b;
        if (tlv_get_bool(t, &b) < 0)
            return COAP_400_BAD_REQUEST;
        v->i = b;
        return 0;
    }
    case OBJ_OBJLNK: return tlv_get_objlnk(t, &v->lnk_obj, &v->lnk_inst) == 0 ? 0 : COAP_400_BAD_REQUEST;
    default: return COAP_400_BAD_REQUEST;
    }
}

static int parse_int64_text(const char *s, int64_t *out)
{
    int neg = 0;
    uint64_t v = 0;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_C(0x7FFFFFFFFFFFFFFF) - 9) / 10)
            return -1;
        v = v * 10u + (uint64_t)(*s - '0');
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static uint8_t decode_text_value(const obj_res_t *r, const uint8_t *body, uint32_t len, obj_value_t *v)
{
    char text[64];
    memset(v, 0, sizeof(*v));
    v->type = r->type;
    if (r->type == OBJ_STRING) {
        v->data = body;
        v->len = len;
        return 0;
    }
    if (r->type == OBJ_OPAQUE)
        return COAP_415_UNSUPPORTED_FORMAT;
    if (len >= sizeof(text))
        return COAP_400_BAD_REQUEST;
    if (len)
        memcpy(text, body, len);
    text[len] = '\0';
    char *end;
    switch (r->type) {
    case OBJ_INT:
    case OBJ_TIME: return parse_int64_text(text, &v->i) == 0 ? 0 : COAP_400_BAD_REQUEST;
    case OBJ_FLOAT:
        v->f = strtod(text, &end);
        return (end != text && *end == '\0') ? 0 : COAP_400_BAD_REQUEST;
    case OBJ_BOOL:
        if (strcmp(text, "0") != 0 && strcmp(text, "1") != 0)
            return COAP_400_BAD_REQUEST;
        v->i = text[0] == '1';
        return 0;
    case OBJ_OBJLNK: {
        unsigned long o = strtoul(text, &end, 10);
        if (end == text || *end != ':' || o > 65535)
            return COAP_400_BAD_REQUEST;
        char *start = end + 1;
        unsigned long i = strtoul(start, &end, 10);
        if (end == start || *end != '\0' || i > 65535)
            return COAP_400_BAD_REQUEST;
        v->lnk_obj = (uint16_t)o;
        v->lnk_inst = (uint16_t)i;
        return 0;
    }
    default: return COAP_400_BAD_REQUEST;
    }
}

/* One resource (or multiple-resource) TLV written into /obj/inst. */
static uint8_t write_resource_tlv(uint16_t obj, uint16_t inst, const tlv_t *t, int check_only, int skip_readonly,
                                  char *why, size_t whylen)
{
    const obj_res_t *r = obj_resource(obj, t->id);
    if (r == NULL) {
        snprintf(why, whylen, "/%u/%u/%u does not exist", obj, inst, t->id);
        return COAP_404_NOT_FOUND;
    }
    if (!(r->ops & OP_W)) {
        if (skip_readonly)
            return 0;
        snprintf(why, whylen, "/%u/%u/%u is not writable", obj, inst, t->id);
        return COAP_405_METHOD_NOT_ALLOWED;
    }
    if (t->kind != TLV_RESOURCE || r->multiple) {
        snprintf(why, whylen, "/%u/%u/%u: multiple-resource writes are not supported", obj, inst, t->id);
        return COAP_400_BAD_REQUEST;
    }
    obj_value_t v;
    uint8_t rc = decode_tlv_value(r, t, &v);
    if (rc) {
        snprintf(why, whylen, "/%u/%u/%u: value of %lu bytes is not a valid %s", obj, inst, t->id,
                 (unsigned long)t->len,
                 r->type == OBJ_INT ? "integer" : r->type == OBJ_FLOAT ? "float" : r->type == OBJ_BOOL ? "boolean" : "value");
        return rc;
    }
    rc = obj_write(obj, inst, t->id, &v, check_only);
    if (rc)
        snprintf(why, whylen, "%s", obj_last_error());
    return rc;
}

/* The resource TLVs of one instance in buf, written (or checked) one by one. */
static uint8_t write_instance_tlvs(uint16_t obj, uint16_t inst, const uint8_t *buf, uint32_t len, int check_only,
                                   int skip_readonly, char *why, size_t whylen)
{
    uint32_t pos = 0;
    tlv_t t;
    while (tlv_next(buf, len, &pos, &t) == 1) {
        if (t.kind != TLV_RESOURCE && t.kind != TLV_MULTIPLE_RESOURCE) {
            snprintf(why, whylen, "expected resource TLVs inside /%u/%u", obj, inst);
            return COAP_400_BAD_REQUEST;
        }
        uint8_t rc = write_resource_tlv(obj, inst, &t, check_only, skip_readonly, why, whylen);
        if (rc)
            return rc;
    }
    return 0;
}

static uint8_t write_tlv(const lpath_t *p, const uint8_t *body, uint32_t len, int check_only, char *why, size_t whylen)
{
    uint16_t obj = p->id[0], inst = p->id[1];
    uint32_t pos = 0;
    tlv_t t;
    if (p->depth == 3) {
        int seen = 0;
        while (tlv_next(body, len, &pos, &t) == 1) {
            if ((t.kind != TLV_RESOURCE && t.kind != TLV_MULTIPLE_RESOURCE) || t.id != p->id[2] || seen++) {
                snprintf(why, whylen, "a write of /%u/%u/%u takes one TLV for resource %u", obj, inst, p->id[2], p->id[2]);
                return COAP_400_BAD_REQUEST;
            }
            uint8_t rc = write_resource_tlv(obj, inst, &t, check_only, 0, why, whylen);
            if (rc)
                return rc;
        }
        if (!seen) {
            snprintf(why, whylen, "empty TLV payload");
            return COAP_400_BAD_REQUEST;
        }
        return 0;
    }
    /* instance: resource TLVs, or one Object Instance TLV of this instance around them */
    if (tlv_next(body, len, &pos, &t) == 1 && t.kind == TLV_OBJECT_INSTANCE) {
        if (t.id != inst || pos != len) {
            snprintf(why, whylen, "the Object Instance TLV must be /%u/%u and alone", obj, inst);
            return COAP_400_BAD_REQUEST;
        }
        return write_instance_tlvs(obj, inst, t.value, t.len, check_only, 0, why, whylen);
    }
    return write_instance_tlvs(obj, inst, body, len, check_only, 0, why, whylen);
}

static uint8_t do_write(const lpath_t *p, uint16_t cf, const uint8_t *body, uint32_t len, char *why, size_t whylen)
{
    if (p->depth == 0 || p->depth == 1 || p->depth == 4) {
        snprintf(why, whylen, "write works on an instance or a resource");
        return COAP_405_METHOD_NOT_ALLOWED;
    }
    uint16_t obj = p->id[0];
    if (!obj_known(obj) || !obj_instance_exists(obj, p->id[1])) {
        snprintf(why, whylen, "/%u/%u does not exist", obj, p->id[1]);
        return COAP_404_NOT_FOUND;
    }
    const obj_res_t *r = p->depth == 3 ? obj_resource(obj, p->id[2]) : NULL;
    if (p->depth == 3 && r == NULL) {
        snprintf(why, whylen, "/%u/%u/%u does not exist", obj, p->id[1], p->id[2]);
        return COAP_404_NOT_FOUND;
    }
    if (cf == COAP_CF_NONE && r && r->type == OBJ_OPAQUE)
        cf = COAP_CF_OPAQUE;
    uint8_t rc;
    if (cf == COAP_CF_TEXT || cf == COAP_CF_OPAQUE) {
        if (r == NULL) {
            snprintf(why, whylen, "content format %u needs a resource path", cf);
            return COAP_400_BAD_REQUEST;
        }
        obj_value_t v;
        if (cf == COAP_CF_OPAQUE) {
            if (r->type != OBJ_OPAQUE) {
                snprintf(why, whylen, "application/octet-stream only fits opaque resources");
                return COAP_415_UNSUPPORTED_FORMAT;
            }
            memset(&v, 0, sizeof(v));
            v.type = OBJ_OPAQUE;
            v.data = body;
            v.len = len;
            rc = 0;
        } else if (!(r->ops & OP_W)) {
            snprintf(why, whylen, "/%u/%u/%u is not writable", obj, p->id[1], p->id[2]);
            return COAP_405_METHOD_NOT_ALLOWED;
        } else if ((rc = decode_text_value(r, body, len, &v)) != 0) {
            snprintf(why, whylen, "'%.*s' is not a valid value for /%u/%u/%u", (int)(len > 32 ? 32 : len),
                     (const char *)body, obj, p->id[1], p->id[2]);
            return rc;
        }
        rc = obj_write(obj, p->id[1], p->id[2], &v, 0);
        if (rc)
            snprintf(why, whylen, "%s", obj_last_error());
        return rc ? rc : COAP_204_CHANGED;
    }
    if (!is_tlv(cf)) {
        if (cf == COAP_CF_NONE)
            snprintf(why, whylen, "a write needs a Content-Format (TLV 11542, text 0 or opaque 42)");
        else
            snprintf(why, whylen, "content format %u is not supported; use TLV (11542), text (0) or opaque (42)", cf);
        return COAP_415_UNSUPPORTED_FORMAT;
    }
    if (tlv_validate(body, len) < 0) {
        snprintf(why, whylen, "malformed TLV payload");
        return COAP_400_BAD_REQUEST;
    }
    /* check everything first so a bad resource leaves the instance untouched */
    if ((rc = write_tlv(p, body, len, 1, why, whylen)) != 0)
        return rc;
    if ((rc = write_tlv(p, body, len, 0, why, whylen)) != 0)
        return rc;
    return COAP_204_CHANGED;
}

static uint8_t do_create(const lpath_t *p, uint16_t cf, const uint8_t *body, uint32_t len, coap_pdu_t *rsp, char *why,
                         size_t whylen)
{
    uint16_t obj = p->id[0];
    if (!obj_known(obj)) {
        snprintf(why, whylen, "object %u does not exist", obj);
        return COAP_404_NOT_FOUND;
    }
    int32_t want = -1;
    const uint8_t *res = body;
    uint32_t res_len = len;
    if (len) {
        if (!is_tlv(cf)) {
            snprintf(why, whylen, "create takes a TLV payload (11542), got content format %u", cf);
            return COAP_415_UNSUPPORTED_FORMAT;
        }
        if (tlv_validate(body, len) < 0) {
            snprintf(why, whylen, "malformed TLV payload");
            return COAP_400_BAD_REQUEST;
        }
        uint32_t pos = 0;
        tlv_t t;
        if (tlv_next(body, len, &pos, &t) == 1 && t.kind == TLV_OBJECT_INSTANCE) {
            if (pos != len) {
                snprintf(why, whylen, "create makes one instance at a time");
                return COAP_400_BAD_REQUEST;
            }
            want = t.id;
            res = t.value;
            res_len = t.len;
        }
    }
    uint16_t id;
    uint8_t rc = obj_create(obj, want, &id);
    if (rc) {
        snprintf(why, whylen, "%s", obj_last_error());
        return rc;
    }
    if ((rc = write_instance_tlvs(obj, id, res, res_len, 1, 1, why, whylen)) != 0 ||
        (rc = write_instance_tlvs(obj, id, res, res_len, 0, 1, why, whylen)) != 0) {
        obj_delete(obj, id);
        return rc;
    }
    char seg[8];
    snprintf(seg, sizeof(seg), "%u", obj);
    coap_pdu_add_str(rsp, COAP_OPT_LOCATION_PATH, seg);
    snprintf(seg, sizeof(seg), "%u", id);
    coap_pdu_add_str(rsp, COAP_OPT_LOCATION_PATH, seg);
    lwm2m_log("created /%u/%u", obj, id);
    return COAP_201_CREATED;
}

/* ------------------------------------------------------------ request dispatch */

static void on_request(const coap_peer_t *from, const coap_msg_t *req, const uint8_t *body, uint32_t body_len,
                       coap_pdu_t *rsp, uint32_t now)
{
    char why[96] = "";
    lpath_t p;
    uint8_t code;
    if (parse_path(req, &p) < 0) {
        rsp->code = COAP_404_NOT_FOUND;
        coap_pdu_printf(rsp, "not an LwM2M path (numeric /obj/inst/res/ri)");
        return;
    }
    uint16_t cf = coap_get_format(req, COAP_OPT_CONTENT_FORMAT);
    uint16_t accept = coap_get_format(req, COAP_OPT_ACCEPT);
    switch (req->code) {
    case COAP_GET: {
        if (accept == COAP_CF_LINK) {
            code = discover(&p, rsp, why, sizeof(why));
            break;
        }
        uint32_t observe;
        int has_observe = coap_get_uint(req, COAP_OPT_OBSERVE, &observe) == 1;
        code = render(&p, accept, rsp, why, sizeof(why));
        if (code == 0) {
            code = COAP_205_CONTENT;
            if (has_observe && observe == 0) {
                char path[COAP_OBS_PATH_LEN];
                path_text(&p, path, sizeof(path));
                uint16_t used = accept == COAP_CF_NONE ? COAP_CF_LWM2M_TLV : accept;
                int32_t seq = coap_observe_add(from, req, path, used, now);
                if (seq >= 0) {
                    coap_pdu_add_uint(rsp, COAP_OPT_OBSERVE, (uint32_t)seq);
                    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
                        coap_observer_t *o = coap_observer(i);
                        if (o && o->seq == (uint32_t)seq)
                            g_notify_pending[i] = 0;
                    }
                }
            } else if (has_observe && observe == 1) {
                coap_observe_remove(from, req->token, req->tkl);
            }
        }
        break;
    }
    case COAP_PUT:
        if (coap_find_option(req, COAP_OPT_URI_QUERY, NULL) && body_len == 0)
            code = write_attributes(&p, req, why, sizeof(why));
        else
            code = do_write(&p, cf, body, body_len, why, sizeof(why));
        break;
    case COAP_POST:
        if (p.depth == 1) {
            code = do_create(&p, cf, body, body_len, rsp, why, sizeof(why));
        } else if (p.depth == 2) {
            code = do_write(&p, cf, body, body_len, why, sizeof(why));
        } else if (p.depth == 3) {
            code = obj_execute(p.id[0], p.id[1], p.id[2], body, body_len);
            if (code)
                snprintf(why, sizeof(why), "%s", obj_last_error());
            else
                code = COAP_204_CHANGED;
        } else {
            code = COAP_405_METHOD_NOT_ALLOWED;
            snprintf(why, sizeof(why), "POST works on an object (create), instance (write) or resource (execute)");
        }
        break;
    default: /* DELETE */
        if (p.depth != 2) {
            code = COAP_405_METHOD_NOT_ALLOWED;
            snprintf(why, sizeof(why), "DELETE works on an object instance");
        } else if ((code = obj_delete(p.id[0], p.id[1])) != 0) {
            snprintf(why, sizeof(why), "%s", obj_last_error());
        } else {
            lwm2m_log("deleted /%u/%u", p.id[0], p.id[1]);
            attrs_forget(&p);
            code = COAP_202_DELETED;
        }
        break;
    }
    rsp->code = code;
    if (COAP_CODE_CLASS(code) != 2) {
        /* an error carries its reason as diagnostic payload, never content */
        coap_pdu_remove_option(rsp, COAP_OPT_CONTENT_FORMAT);
        coap_pdu_remove_option(rsp, COAP_OPT_OBSERVE);
        rsp->payload_len = 0;
        coap_pdu_printf(rsp, "%s", why);
    }
}

/* ------------------------------------------------------------ observe */

void lwm2m_resource_changed(uint16_t obj, uint16_t inst, uint16_t res)
{
    char changed[COAP_OBS_PATH_LEN];
    snprintf(changed, sizeof(changed), "/%u/%u/%u", obj, inst, res);
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = coap_observer(i);
        if (o == NULL)
            continue;
        size_t n = strlen(o->path);
        if (strncmp(changed, o->path, n) == 0 && (changed[n] == '\0' || changed[n] == '/'))
            g_notify_pending[i] = 1;
    }
}

#define PMAX_CHECK_MS 100u

void lwm2m_instance_removed(uint16_t obj, uint16_t inst)
{
    /* observers of the instance (or below) get a final 4.04; observers of the object a new read */
    char gone[COAP_OBS_PATH_LEN];
    int n = snprintf(gone, sizeof(gone), "/%u/%u", obj, inst);
    char object[8];
    snprintf(object, sizeof(object), "/%u", obj);
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = coap_observer(i);
        if (o == NULL)
            continue;
        if ((strncmp(o->path, gone, (size_t)n) == 0 && (o->path[n] == '\0' || o->path[n] == '/')) ||
            strcmp(o->path, object) == 0)
            g_notify_pending[i] = 1;
    }
}

static void notify_observers(uint32_t now)
{
    /* pending changes go out at once; pmax deadlines only need a look now and then */
    static uint32_t last_check;
    int pending = 0;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++)
        pending |= g_notify_pending[i];
    if (!pending && now - last_check < PMAX_CHECK_MS)
        return;
    last_check = now;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = coap_observer(i);
        if (o == NULL) {
            g_notify_pending[i] = 0;
            continue;
        }
        int32_t pmin, pmax;
        attrs_for(o->path, &pmin, &pmax);
        uint32_t since = now - o->last_ms;
        int send = (g_notify_pending[i] && since >= (uint32_t)pmin * 1000u) ||
                   (pmax > 0 && since >= (uint32_t)pmax * 1000u);
        if (!send)
            continue;
        g_notify_pending[i] = 0;
        lpath_t p;
        char why[96];
        coap_pdu_init(&g_ntf, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, g_ntf_payload, sizeof(g_ntf_payload));
        if (path_from_text(o->path, &p) < 0)
            continue;
        uint8_t rc = render(&p, o->format, &g_ntf, why, sizeof(why));
        if (rc) {
            /* what was observed is gone: tell the observer and end the observation */
            g_ntf.code = rc;
            g_ntf.payload_len = 0;
            coap_pdu_remove_option(&g_ntf, COAP_OPT_CONTENT_FORMAT);
            coap_pdu_printf(&g_ntf, "%s", why);
            coap_notify(o, &g_ntf, now);
            continue;
        }
        coap_notify(o, &g_ntf, now);
    }
}

/* ------------------------------------------------------------ registration */

static int build_links(char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "</>;rt=\"oma.lwm2m\";ct=%u", COAP_CF_LWM2M_TLV);
    int count;
    const uint16_t *objs = obj_list(&count);
    for (int k = 0; k < count && n >= 0 && (size_t)n < cap; k++) {
        uint16_t ids[OBJ_MAX_INSTANCES];
        int ni = obj_instances(objs[k], ids, OBJ_MAX_INSTANCES);
        if (ni == 0 && obj_listed_empty(objs[k]))
            n += snprintf(buf + n, cap - (size_t)n, ",</%u>", objs[k]);
        for (int i = 0; i < ni && (size_t)n < cap; i++)
            n += snprintf(buf + n, cap - (size_t)n, ",</%u/%u>", objs[k], ids[i]);
    }
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

static uint32_t update_interval_ms(void)
{
    /* early enough that a full CON retransmission series (~93 s) still lands in time */
    uint32_t lt = g.lifetime;
    uint32_t s = lt > 186u ? lt - 93u : lt / 2u;
    return (s ? s : 1u) * 1000u;
}

static void enter_backoff(uint32_t now, const char *why)
{
    g.state = ST_BACKOFF;
    g.retry_ms = now + g.backoff_ms;
    lwm2m_log("registration failed (%s); retrying in %lu s", why, (unsigned long)(g.backoff_ms / 1000u));
    g.backoff_ms = g.backoff_ms * 2u > REGISTER_BACKOFF_MAX_MS ? REGISTER_BACKOFF_MAX_MS : g.backoff_ms * 2u;
}

static const char *result_text(int result, const coap_msg_t *rsp, char *buf, size_t cap)
{
    if (result == COAP_RESULT_TIMEOUT)
        return "no answer";
    if (result == COAP_RESULT_RESET)
        return "reset by the server";
    if (result != COAP_RESULT_OK || rsp == NULL)
        return "cancelled";
    snprintf(buf, cap, "%u.%02u %.*s", COAP_CODE_CLASS(rsp->code), COAP_CODE_DETAIL(rsp->code),
             (int)(rsp->payload_len > 60 ? 60 : rsp->payload_len), (const char *)rsp->payload);
    return buf;
}

static void on_register(void *arg, int result, const coap_msg_t *rsp)
{
    (void)arg;
    char buf[80];
    uint32_t now = fw_millis();
    if (g.state != ST_REGISTERING)
        return;
    if (result != COAP_RESULT_OK || rsp->code != COAP_201_CREATED) {
        enter_backoff(now, result_text(result, rsp, buf, sizeof(buf)));
        return;
    }
    g.n_location = 0;
    for (const coap_option_t *o = coap_find_option(rsp, COAP_OPT_LOCATION_PATH, NULL); o && g.n_location < MAX_LOCATION;
         o = coap_find_option(rsp, COAP_OPT_LOCATION_PATH, o)) {
        uint16_t n = o->len < LOCATION_LEN - 1 ? o->len : LOCATION_LEN - 1;
        memcpy(g.location[g.n_location], o->val, n);
        g.location[g.n_location][n] = '\0';
        g.n_location++;
    }
    if (g.n_location == 0) {
        enter_backoff(now, "2.01 without a Location-Path");
        return;
    }
    g.state = ST_REGISTERED;
    g.backoff_ms = REGISTER_BACKOFF_FIRST_MS;
    g.next_update_ms = now + update_interval_ms();
    char loc[64] = "";
    size_t n = 0;
    for (uint8_t i = 0; i < g.n_location && n < sizeof(loc); i++)
        n += (size_t)snprintf(loc + n, sizeof(loc) - n, "/%s", g.location[i]);
    lwm2m_log("Registration Done (EP='%s') as %s, lifetime %lu s, %lu ms after boot, %lu ms after the request",
              g.endpoint, loc, (unsigned long)g.lifetime, (unsigned long)now, (unsigned long)(now - g.register_sent_ms));
}

static void start_register(uint32_t now)
{
    char q[LWM2M_MAX_ENDPOINT + 8];
    coap_cancel(&tag_register, 0);
    coap_cancel(&tag_update, 0);
    g.update_in_flight = 0;
    coap_request_init(&g_req, COAP_POST, 1, g_req_payload, sizeof(g_req_payload));
    coap_pdu_add_str(&g_req, COAP_OPT_URI_PATH, "rd");
    snprintf(q, sizeof(q), "ep=%s", g.endpoint);
    coap_pdu_add_str(&g_req, COAP_OPT_URI_QUERY, q);
    snprintf(q, sizeof(q), "lt=%lu", (unsigned long)g.lifetime);
    coap_pdu_add_str(&g_req, COAP_OPT_URI_QUERY, q);
    coap_pdu_add_str(&g_req, COAP_OPT_URI_QUERY, "lwm2m=1.1");
    coap_pdu_add_str(&g_req, COAP_OPT_URI_QUERY, "b=U");
    coap_pdu_add_uint(&g_req, COAP_OPT_CONTENT_FORMAT, COAP_CF_LINK);
    int n = build_links((char *)g_req_payload, sizeof(g_req_payload));
    g_req.payload_len = n > 0 ? (uint16_t)n : 0;
    g.links_dirty = 0;
    g.lifetime_dirty = 0;
    g.update_requested = 0;
    g.state = ST_REGISTERING;
    g.register_sent_ms = now;
    if (coap_send_request(&g.server, &g_req, on_register, &tag_register, now) < 0)
        enter_backoff(now, "no free CoAP exchange");
}

static void on_update(void *arg, int result, const coap_msg_t *rsp)
{
    (void)arg;
    char buf[80];
    uint32_t now = fw_millis();
    g.update_in_flight = 0;
    if (g.state != ST_REGISTERED)
        return;
    if (result == COAP_RESULT_OK && rsp->code == COAP_204_CHANGED) {
        g.next_update_ms = now + update_interval_ms();
        lwm2m_log("Update Done");
        return;
    }
    /* 4.04: the server forgot us; anything else: start over as well */
    lwm2m_log("update refused (%s); registering again", result_text(result, rsp, buf, sizeof(buf)));
    start_register(now);
}

static void start_update(uint32_t now)
{
    char q[16];
    coap_request_init(&g_req, COAP_POST, 1, g_req_payload, sizeof(g_req_payload));
    for (uint8_t i = 0; i < g.n_location; i++)
        coap_pdu_add_str(&g_req, COAP_OPT_URI_PATH, g.location[i]);
    if (g.lifetime_dirty) {
        snprintf(q, sizeof(q), "lt=%lu", (unsigned long)g.lifetime);
        coap_pdu_add_str(&g_req, COAP_OPT_URI_QUERY, q);
    }
    if (g.links_dirty) {
        int n = build_links((char *)g_req_payload, sizeof(g_req_payload));
        if (n > 0) {
            g_req.payload_len = (uint16_t)n;
            coap_pdu_add_uint(&g_req, COAP_OPT_CONTENT_FORMAT, COAP_CF_LINK);
        }
    }
    if (coap_send_request(&g.server, &g_req, on_update, &tag_update, now) < 0)
        return; /* try again on the next poll */
    g.links_dirty = 0;
    g.lifetime_dirty = 0;
    g.update_requested = 0;
    g.update_in_flight = 1;
    /* a lost update is retried by CoAP; the next periodic one is scheduled on its answer */
    g.next_update_ms = now + update_interval_ms();
}

static void on_deregister(void *arg, int result, const coap_msg_t *rsp)
{
    (void)arg;
    char buf[80];
    if (result == COAP_RESULT_OK && rsp->code == COAP_202_DELETED)
        lwm2m_log("Deregistration success");
    else
        lwm2m_log("Deregistration failed (%s)", result_text(result, rsp, buf, sizeof(buf)));
}

static void send_deregister(uint32_t now)
{
    coap_cancel(&tag_register, 0);
    coap_cancel(&tag_update, 0);
    coap_cancel(&tag_deregister, 0);
    g.update_in_flight = 0;
    if (g.state == ST_REGISTERED) {
        coap_request_init(&g_req, COAP_DELETE, 1, NULL, 0);
        for (uint8_t i = 0; i < g.n_location; i++)
            coap_pdu_add_str(&g_req, COAP_OPT_URI_PATH, g.location[i]);
        coap_send_request(&g.server, &g_req, on_deregister, &tag_deregister, now);
    }
    g.state = ST_IDLE;
}

/* ------------------------------------------------------------ public */

void lwm2m_init(void)
{
    memset(&g, 0, sizeof(g));
    memset(g_attrs, 0, sizeof(g_attrs));
    memset(g_notify_pending, 0, sizeof(g_notify_pending));
    g.lifetime = LWM2M_DEFAULT_LIFETIME;
    g.backoff_ms = REGISTER_BACKOFF_FIRST_MS;
    objects_init();
    /* a seed that changes at every boot, warm resets included: new message IDs and tokens */
    coap_init(udp_tx, on_request, boot_seed_next() ^ 0x9E3779B9u);
    lwm2m_log("boot %lu since power-up: CoAP message IDs and tokens start afresh", (unsigned long)boot_count());
    g_udp_bound = udp_bind(LWM2M_LOCAL_PORT, udp_rx) == 0;
    if (!g_udp_bound)
        lwm2m_log("cannot bind UDP port %u", (unsigned)LWM2M_LOCAL_PORT);
}

static int parse_server_uri(const char *uri, coap_peer_t *out)
{
    static const char scheme[] = "coap://";
    char host[16];
    if (strncmp(uri, scheme, sizeof(scheme) - 1) != 0)
        return -1;
    const char *h = uri + sizeof(scheme) - 1;
    size_t n = strcspn(h, ":/");
    if (n == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    if (net_parse_ip(host, &out->ip) != 0)
        return -1;
    const char *rest = h + n;
    out->port = LWM2M_DEFAULT_PORT;
    if (*rest == ':') {
        char *end;
        unsigned long port = strtoul(rest + 1, &end, 10);
        if (end == rest + 1 || port == 0 || port > 65535)
            return -1;
        out->port = (uint16_t)port;
        rest = end;
    }
    if (*rest == '/')
        rest++;
    return *rest == '\0' ? 0 : -1;
}

static int valid_endpoint(const char *ep)
{
    size_t n = strlen(ep);
    if (n == 0 || n > LWM2M_MAX_ENDPOINT)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ep[i] <= ' ' || ep[i] > '~' || ep[i] == '&' || ep[i] == '?' || ep[i] == '/')
            return 0;
    return 1;
}

int lwm2m_server_add(const char *uri, const char *endpoint)
{
    coap_peer_t server;
    if (uri == NULL || parse_server_uri(uri, &server) < 0)
        return -1;
    if (endpoint == NULL || !valid_endpoint(endpoint))
        return -2;
    uint32_t now = fw_millis();
    if (g.configured)
        send_deregister(now);
    g.server = server;
    snprintf(g.endpoint, sizeof(g.endpoint), "%s", endpoint);
    g.configured = 1;
    g.backoff_ms = REGISTER_BACKOFF_FIRST_MS;
    char ip[16];
    format_ip(server.ip, ip, sizeof(ip));
    lwm2m_log("registering endpoint %s at %s:%u", g.endpoint, ip, (unsigned)server.port);
    start_register(now);
    return 0;
}

void lwm2m_poll(uint32_t now_ms)
{
    coap_poll(now_ms);
    objects_poll(now_ms);
    switch (g.state) {
    case ST_BACKOFF:
        if (due(now_ms, g.retry_ms))
            start_register(now_ms);
        break;
    case ST_REGISTERED:
        if (!g.update_in_flight &&
            (g.links_dirty || g.lifetime_dirty || g.update_requested || due(now_ms, g.next_update_ms)))
            start_update(now_ms);
        break;
    default:
        break;
    }
    notify_observers(now_ms);
}

void lwm2m_deregister(void)
{
    if (g.state != ST_REGISTERED) {
        send_deregister(fw_millis());
        return;
    }
    uint32_t start = fw_millis();
    send_deregister(start);
    /* give the DELETE a moment to be acknowledged before the caller resets */
    while (coap_pending_requests() > 0 && fw_millis() - start < DEREGISTER_WAIT_MS) {
        net_poll();
        coap_poll(fw_millis());
    }
}

void lwm2m_instances_changed(void) { g.links_dirty = 1; }

void lwm2m_trigger_update(void) { g.update_requested = 1; }

uint32_t lwm2m_lifetime(void) { return g.lifetime; }

void lwm2m_set_lifetime(uint32_t seconds)
{
    if (seconds == 0 || seconds == g.lifetime)
        return;
    g.lifetime = seconds;
    g.lifetime_dirty = 1;
}

int lwm2m_is_registered(void) { return g.state == ST_REGISTERED; }

const char *lwm2m_state_name(void)
{
    switch (g.state) {
    case ST_REGISTERING: return "registering";
    case ST_REGISTERED: return "registered";
    case ST_BACKOFF: return "waiting to retry";
    default: return "idle";
    }
}
