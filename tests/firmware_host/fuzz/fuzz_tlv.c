/* libFuzzer target: the firmware's TLV reader (firmware/src/tlv.c) on any bytes.
 *
 * Walks every TLV (descending into object instances and multiple resources),
 * reads each value as every type, and writes what it read back: a reader that
 * accepted a TLV must be able to produce it again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlv.h"

static void walk(const uint8_t *buf, uint32_t len, int depth)
{
    uint32_t pos = 0;
    tlv_t t;
    uint8_t out[64];
    while (tlv_next(buf, len, &pos, &t) == 1) {
        int64_t i;
        double d;
        int b;
        uint16_t obj, inst;
        (void)tlv_get_int(&t, &i);
        (void)tlv_get_float(&t, &d);
        (void)tlv_get_bool(&t, &b);
        (void)tlv_get_objlnk(&t, &obj, &inst);
        if ((t.kind == TLV_OBJECT_INSTANCE || t.kind == TLV_MULTIPLE_RESOURCE) && depth < 4)
            walk(t.value, t.len, depth + 1);
        if (t.len <= 32) {
            tlv_writer_t w;
            tlv_writer_init(&w, out, sizeof(out));
            tlv_put(&w, (tlv_kind_t)t.kind, t.id, t.value, t.len);
            uint32_t again = 0;
            tlv_t back;
            if (tlv_next(out, sizeof(out), &again, &back) != 1 || back.id != t.id || back.len != t.len ||
                memcmp(back.value, t.value, t.len) != 0)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)tlv_validate(data, (uint32_t)size);
    walk(data, (uint32_t)size, 0);
    return 0;
}
