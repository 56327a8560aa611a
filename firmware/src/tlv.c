/* OMA LwM2M TLV: types byte (kind in bits 7-6, 16-bit id flag in bit 5, length
 * width in bits 4-3, short length in bits 2-0), id, optional length, value. */
#include "tlv.h"

#include <string.h>

int tlv_next(const uint8_t *buf, uint32_t len, uint32_t *pos, tlv_t *out)
{
    uint32_t p = *pos;
    if (p >= len)
        return 0;
    uint8_t types = buf[p++];
    uint32_t id_len = (types & 0x20u) ? 2u : 1u;
    if (len - p < id_len)
        return -1;
    uint16_t id = buf[p];
    if (id_len == 2)
        id = (uint16_t)((id << 8) | buf[p + 1]);
    p += id_len;
    uint32_t width = (types >> 3) & 3u;
    uint32_t vlen = types & 7u;
    if (width) {
        if (len - p < width)
            return -1;
        vlen = 0;
        for (uint32_t i = 0; i < width; i++)
            vlen = (vlen << 8) | buf[p + i];
        p += width;
    }
    if (len - p < vlen)
        return -1;
    out->kind = (uint8_t)(types >> 6);
    out->id = id;
    out->value = buf + p;
    out->len = vlen;
    *pos = p + vlen;
    return 1;
}

static int validate(const uint8_t *buf, uint32_t len, int depth)
{
    uint32_t pos = 0;
    tlv_t t;
    int r;
    while ((r = tlv_next(buf, len, &pos, &t)) == 1) {
        if (t.kind == TLV_OBJECT_INSTANCE || t.kind == TLV_MULTIPLE_RESOURCE) {
            if (depth >= 2 || validate(t.value, t.len, depth + 1) < 0)
                return -1;
        }
    }
    return r;
}

int tlv_validate(const uint8_t *buf, uint32_t len)
{
    return validate(buf, len, 0);
}

int tlv_get_int(const tlv_t *t, int64_t *out)
{
    if (t->len != 1 && t->len != 2 && t->len != 4 && t->len != 8)
        return -1;
    /* sign-extend from the first byte, then shift in the rest */
    int64_t v = (int8_t)t->value[0];
    for (uint32_t i = 1; i < t->len; i++)
        v = (int64_t)((uint64_t)v << 8) | t->value[i];
    *out = v;
    return 0;
}

int tlv_get_float(const tlv_t *t, double *out)
{
    if (t->len == 4) {
        uint32_t bits = 0;
        float f;
        for (int i = 0; i < 4; i++)
            bits = (bits << 8) | t->value[i];
        memcpy(&f, &bits, sizeof(f));
        *out = f;
        return 0;
    }
    if (t->len == 8) {
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = (bits << 8) | t->value[i];
        memcpy(out, &bits, sizeof(*out));
        return 0;
    }
    return -1;
}

int tlv_get_bool(const tlv_t *t, int *out)
{
    if (t->len != 1 || t->value[0] > 1)
        return -1;
    *out = t->value[0];
    return 0;
}

int tlv_get_objlnk(const tlv_t *t, uint16_t *obj, uint16_t *inst)
{
    if (t->len != 4)
        return -1;
    *obj = (uint16_t)((t->value[0] << 8) | t->value[1]);
    *inst = (uint16_t)((t->value[2] << 8) | t->value[3]);
    return 0;
}

void tlv_writer_init(tlv_writer_t *w, uint8_t *buf, uint32_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
}

/* Header bytes for (kind, id, length) into h; returns its size (2..6). */
static uint32_t header(uint8_t *h, tlv_kind_t kind, uint16_t id, uint32_t len)
{
    uint32_t n = 1;
    uint8_t types = (uint8_t)(kind << 6);
    if (id > 0xFF) {
        types |= 0x20;
        h[n++] = (uint8_t)(id >> 8);
    }
    h[n++] = (uint8_t)id;
    if (len < 8) {
        types |= (uint8_t)len;
    } else if (len <= 0xFF) {
        types |= 1u << 3;
        h[n++] = (uint8_t)len;
    } else if (len <= 0xFFFF) {
        types |= 2u << 3;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        types |= 3u << 3;
        h[n++] = (uint8_t)(len >> 16);
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    }
    h[0] = types;
    return n;
}

uint32_t tlv_begin(const tlv_writer_t *w)
{
    return w->len;
}

void tlv_end(tlv_writer_t *w, uint32_t mark, tlv_kind_t kind, uint16_t id)
{
    uint8_t h[6];
    if (w->err || mark > w->len)
        return;
    uint32_t body = w->len - mark;
    uint32_t hn = header(h, kind, id, body);
    if (body > 0xFFFFFFu || w->cap - w->len < hn) {
        w->err = 1;
        return;
    }
    memmove(w->buf + mark + hn, w->buf + mark, body);
    memcpy(w->buf + mark, h, hn);
    w->len += hn;
}

void tlv_put(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, const void *value, uint32_t len)
{
    uint8_t h[6];
    if (w->err)
        return;
    uint32_t hn = header(h, kind, id, len);
    if (len > 0xFFFFFFu || w->cap - w->len < hn || w->cap - w->len - hn < len) {
        w->err = 1;
        return;
    }
    memcpy(w->buf + w->len, h, hn);
    if (len)
        memcpy(w->buf + w->len + hn, value, len);
    w->len += hn + len;
}

void tlv_put_int(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, int64_t v)
{
    uint8_t b[8];
    uint32_t n;
    if (v >= INT8_MIN && v <= INT8_MAX)
        n = 1;
    else if (v >= INT16_MIN && v <= INT16_MAX)
        n = 2;
    else if (v >= INT32_MIN && v <= INT32_MAX)
        n = 4;
    else
        n = 8;
    for (uint32_t i = 0; i < n; i++)
        b[i] = (uint8_t)((uint64_t)v >> (8 * (n - 1 - i)));
    tlv_put(w, kind, id, b, n);
}

void tlv_put_float(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, double v)
{
    uint8_t b[8];
    float f = (float)v;
    if ((double)f == v) {
        uint32_t bits;
        memcpy(&bits, &f, sizeof(bits));
        for (int i = 0; i < 4; i++)
            b[i] = (uint8_t)(bits >> (24 - 8 * i));
        tlv_put(w, kind, id, b, 4);
    } else {
        uint64_t bits;
        memcpy(&bits, &v, sizeof(bits));
        for (int i = 0; i < 8; i++)
            b[i] = (uint8_t)(bits >> (56 - 8 * i));
        tlv_put(w, kind, id, b, 8);
    }
}

void tlv_put_bool(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, int v)
{
    uint8_t b = v ? 1 : 0;
    tlv_put(w, kind, id, &b, 1);
}

void tlv_put_str(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, const char *s)
{
    tlv_put(w, kind, id, s, (uint32_t)strlen(s));
}

void tlv_put_objlnk(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, uint16_t obj, uint16_t inst)
{
    uint8_t b[4] = { (uint8_t)(obj >> 8), (uint8_t)obj, (uint8_t)(inst >> 8), (uint8_t)inst };
    tlv_put(w, kind, id, b, 4);
}
