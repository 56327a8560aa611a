/* OMA LwM2M TLV (content format 11542): framing and value encodings. */
#ifndef TLV_H
#define TLV_H

#include <stdint.h>

typedef enum {
    TLV_OBJECT_INSTANCE = 0,
    TLV_RESOURCE_INSTANCE = 1,
    TLV_MULTIPLE_RESOURCE = 2,
    TLV_RESOURCE = 3,
} tlv_kind_t;

typedef struct {
    uint8_t kind;          /* tlv_kind_t */
    uint16_t id;
    const uint8_t *value;
    uint32_t len;
} tlv_t;

/* Reads the TLV at *pos of buf[0..len) and advances *pos past it.
 * 1 = one read, 0 = end of buffer, -1 = malformed (truncated header or value). */
int tlv_next(const uint8_t *buf, uint32_t len, uint32_t *pos, tlv_t *out);
/* 0 when buf is a well-formed sequence of TLVs, containers included; -1 otherwise. */
int tlv_validate(const uint8_t *buf, uint32_t len);

/* Typed values; 0 ok, -1 wrong length/content for the type. */
int tlv_get_int(const tlv_t *t, int64_t *out);        /* 1, 2, 4 or 8 bytes, signed */
int tlv_get_float(const tlv_t *t, double *out);       /* 4 or 8 bytes IEEE 754 */
int tlv_get_bool(const tlv_t *t, int *out);           /* 1 byte, 0 or 1 */
int tlv_get_objlnk(const tlv_t *t, uint16_t *obj, uint16_t *inst);

/* Writer into a caller buffer; any overflow sets err and later calls do nothing. */
typedef struct {
    uint8_t *buf;
    uint32_t cap;
    uint32_t len;
    int err;
} tlv_writer_t;

void tlv_writer_init(tlv_writer_t *w, uint8_t *buf, uint32_t cap);
/* Containers: note the position, write the children, then wrap them. */
uint32_t tlv_begin(const tlv_writer_t *w);
void tlv_end(tlv_writer_t *w, uint32_t mark, tlv_kind_t kind, uint16_t id);
void tlv_put(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, const void *value, uint32_t len);
void tlv_put_int(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, int64_t v);      /* shortest of 1/2/4/8 */
void tlv_put_float(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, double v);     /* 4 bytes when exact */
void tlv_put_bool(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, int v);
void tlv_put_str(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, const char *s);
void tlv_put_objlnk(tlv_writer_t *w, tlv_kind_t kind, uint16_t id, uint16_t obj, uint16_t inst);

#endif
