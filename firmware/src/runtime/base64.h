/* Strict base64 decoding (RFC 4648 standard alphabet, '=' padding required,
 * no whitespace, canonical: the unused bits of the last quantum must be 0).
 *
 * The streaming form lets the runtime decode a base64 string straight out of
 * the JSON buffer (through the string iterator) without a copy.
 */
#ifndef RT_BASE64_H
#define RT_BASE64_H

#include <stdint.h>

enum {
    B64_OK = 0,
    B64_ERR_CHAR = -1,      /* character outside the alphabet */
    B64_ERR_PAD = -2,       /* '=' in the wrong place, or data after padding */
    B64_ERR_LENGTH = -3,    /* input ends in the middle of a 4-character group */
    B64_ERR_SPACE = -4,     /* output buffer too small */
    B64_ERR_BITS = -5,      /* non-zero unused bits before the padding */
};

typedef struct {
    uint8_t *out;
    uint32_t cap;
    uint32_t len;       /* bytes written so far */
    uint32_t nin;       /* characters consumed so far */
    uint32_t acc;
    uint8_t  nquad;     /* characters in the current group */
    uint8_t  npad;      /* '=' seen in the current group */
    uint8_t  done;      /* a padded group ended the data */
    int      err;
} b64_stream_t;

void b64_stream_init(b64_stream_t *st, uint8_t *out, uint32_t cap);
/* Feed one character; returns B64_OK or the (sticky) error. */
int  b64_stream_feed(b64_stream_t *st, uint8_t c);
/* End of input: B64_OK with st->len bytes decoded, or an error. */
int  b64_stream_finish(b64_stream_t *st);

/* One-shot decode; on error *err_pos (if not NULL) is the offending input offset. */
int  base64_decode(const char *in, uint32_t in_len, uint8_t *out, uint32_t cap,
                   uint32_t *out_len, uint32_t *err_pos);
/* Upper bound of the decoded size of in_len characters. */
uint32_t base64_decoded_max(uint32_t in_len);
const char *base64_strerror(int err);

#endif
