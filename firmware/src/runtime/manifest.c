#include "manifest.h"

#include <stdio.h>
#include <string.h>

static int fail(char *err, uint32_t errlen, const char *what, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "manifest: %s %s", what, why);
    return -1;
}

static int get_string(const json_doc_t *d, int obj, const char *key, char *out, uint32_t cap,
                      const char *what, char *err, uint32_t errlen)
{
    int t = json_object_get(d, obj, key);
    if (t < 0 || d->tok[t].type != JSON_STRING)
        return fail(err, errlen, what, "missing or not a string");
    int n = json_string_copy(d, t, out, cap);
    if (n == -2) {
        if (err && errlen)
            snprintf(err, errlen, "manifest: %s longer than %lu bytes", what, (unsigned long)cap - 1);
        return -1;
    }
    if (n < 0)
        return fail(err, errlen, what, "contains a NUL character");
    if (n == 0)
        return fail(err, errlen, what, "is empty");
    return 0;
}

static int get_int(const json_doc_t *d, int obj, const char *key, int32_t *out, const char *what,
                   char *err, uint32_t errlen)
{
    int t = json_object_get(d, obj, key);
    if (t < 0 || d->tok[t].type != JSON_NUMBER)
        return fail(err, errlen, what, "missing or not a number");
    if (json_int(d, t, out) != 0)
        return fail(err, errlen, what, "must be a 32-bit integer");
    return 0;
}

static int parse_io_list(const json_doc_t *d, int root, const char *list, rt_io_decl_t *decls,
                         uint8_t *count, char *err, uint32_t errlen)
{
    char what[48];
    int arr = json_object_get(d, root, list);

    *count = 0;
    if (arr < 0)
        return 0;   /* a service may have no inputs or no outputs */
    if (d->tok[arr].type != JSON_ARRAY)
        return fail(err, errlen, list, "must be an array");
    if (d->tok[arr].count > RT_MAX_IO) {
        if (err && errlen)
            snprintf(err, errlen, "manifest: %s has %u entries, at most %u supported", list,
                     (unsigned)d->tok[arr].count, (unsigned)RT_MAX_IO);
        return -1;
    }
    for (uint16_t i = 0; i < d->tok[arr].count; i++) {
        int o = json_array_get(d, arr, i);
        rt_io_decl_t *io = &decls[i];
        int32_t type;

        memset(io, 0, sizeof(*io));
        snprintf(what, sizeof(what), "%s[%u]", list, (unsigned)i);
        if (d->tok[o].type != JSON_OBJECT)
            return fail(err, errlen, what, "must be an object");
        snprintf(what, sizeof(what), "%s[%u].key", list, (unsigned)i);
        if (get_string(d, o, "key", io->key, sizeof(io->key), what, err, errlen))
            return -1;
        for (uint16_t k = 0; k < i; k++)
            if (strcmp(decls[k].key, io->key) == 0)
                return fail(err, errlen, what, "duplicates an earlier key");
        snprintf(what, sizeof(what), "%s[%u].type", list, (unsigned)i);
        if (get_int(d, o, "type", &type, what, err, errlen))
            return -1;
        if (type != RT_TYPE_INT && type != RT_TYPE_FLOAT)
            return fail(err, errlen, what, "must be 0 (int) or 1 (float)");
        io->type = (uint8_t)type;

        snprintf(what, sizeof(what), "%s[%u].data_model_mapping", list, (unsigned)i);
        int m = json_object_get(d, o, "data_model_mapping");
        if (m < 0)
            continue;
        if (d->tok[m].type != JSON_ARRAY)
            return fail(err, errlen, what, "must be an array of strings");
        if (d->tok[m].count > RT_MAX_MAPPINGS)
            return fail(err, errlen, what, "has too many entries");
        for (uint16_t k = 0; k < d->tok[m].count; k++) {
            int s = json_array_get(d, m, k);
            int n = d->tok[s].type == JSON_STRING
                        ? json_string_copy(d, s, io->mapping[k], RT_MAPPING_MAX) : -1;
            if (n <= 0)
                return fail(err, errlen, what, "entries must be non-empty strings of at most 47 bytes");
        }
        io->nmap = (uint8_t)d->tok[m].count;
    }
    *count = (uint8_t)d->tok[arr].count;
    return 0;
}

int manifest_parse(rt_manifest_t *m, json_doc_t *doc, const char *text, uint32_t len,
                   json_tok_t *toks, uint16_t cap, char *err, uint32_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->service_tok = -1;
    if (json_parse(doc, text, len, toks, cap) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "manifest: invalid JSON at byte %lu: %s",
                     (unsigned long)doc->err_offset, doc->err);
        return -1;
    }
    if (doc->tok[0].type != JSON_OBJECT)
        return fail(err, errlen, "document", "must be a JSON object");
    if (get_string(doc, 0, "name", m->name, sizeof(m->name), "'name'", err, errlen))
        return -1;
    for (const char *p = m->name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(err, errlen, "'name'", "contains a control character");
    if (get_int(doc, 0, "version", &m->version, "'version'", err, errlen))
        return -1;
    int deps = json_object_get(doc, 0, "dependencies");
    if (deps < 0 || doc->tok[deps].type != JSON_OBJECT)
        return fail(err, errlen, "'dependencies'", "missing or not an object");
    if (get_int(doc, deps, "sdk_api", &m->sdk_api, "'dependencies.sdk_api'", err, errlen))
        return -1;
    if (m->sdk_api != RT_SDK_API) {
        if (err && errlen)
            snprintf(err, errlen, "manifest: unsupported sdk_api %ld (this device has %d)",
                     (long)m->sdk_api, RT_SDK_API);
        return -1;
    }
    int svc = json_object_get(doc, 0, "service");
    if (svc < 0 || doc->tok[svc].type != JSON_STRING)
        return fail(err, errlen, "'service'", "missing or not a string");
    if (doc->tok[svc].end == doc->tok[svc].start)
        return fail(err, errlen, "'service'", "is empty");
    m->service_tok = svc;
    if (parse_io_list(doc, 0, "inputs", m->in, &m->n_in, err, errlen))
        return -1;
    if (parse_io_list(doc, 0, "outputs", m->out, &m->n_out, err, errlen))
        return -1;
    return 0;
}

int manifest_input_number(const rt_io_decl_t *in, double v, int32_t *i, float *f)
{
    if (!(v == v) || v > 3.4028234663852886e38 || v < -3.4028234663852886e38)
        return -1;      /* NaN, or beyond any float32 */
    if (in->type == RT_TYPE_FLOAT) {
        *f = (float)v;
        return 0;
    }
    if (v < -2147483648.0 || v > 2147483647.0 || (double)(int32_t)v != v)
        return -1;
    *i = (int32_t)v;
    return 0;
}
