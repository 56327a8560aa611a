#include "base64.h"

#include <stddef.h>

static int b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

void b64_stream_init(b64_stream_t *st, uint8_t *out, uint32_t cap)
{
    st->out = out;
    st->cap = cap;
    st->len = 0;
    st->nin = 0;
    st->acc = 0;
    st->nquad = 0;
    st->npad = 0;
    st->done = 0;
    st->err = B64_OK;
}

static int put(b64_stream_t *st, uint8_t byte)
{
    if (st->len >= st->cap)
        return st->err = B64_ERR_SPACE;
    st->out[st->len++] = byte;
    return B64_OK;
}

int b64_stream_feed(b64_stream_t *st, uint8_t c)
{
    if (st->err)
        return st->err;
    if (st->done)
        return st->err = B64_ERR_PAD;
    st->nin++;
    if (c == '=') {
        /* Padding may only fill positions 3 and 4 of a group. */
        if (st->nquad < 2)
            return st->err = B64_ERR_PAD;
        st->npad++;
        st->nquad++;
    } else {
        int v = b64_value(c);
        if (v < 0)
            return st->err = B64_ERR_CHAR;
        if (st->npad)
            return st->err = B64_ERR_PAD;
        st->acc = (st->acc << 6) | (uint32_t)v;
        st->nquad++;
    }
    if (st->nquad < 4)
        return B64_OK;

    uint32_t acc = st->acc << (6 * st->npad);
    if (st->npad == 2 && (acc & 0xFFFF) != 0)
        return st->err = B64_ERR_BITS;
    if (st->npad == 1 && (acc & 0xFF) != 0)
        return st->err = B64_ERR_BITS;
    if (put(st, (uint8_t)(acc >> 16)))
        return st->err;
    if (st->npad < 2 && put(st, (uint8_t)(acc >> 8)))
        return st->err;
    if (st->npad < 1 && put(st, (uint8_t)acc))
        return st->err;
    if (st->npad)
        st->done = 1;
    st->acc = 0;
    st->nquad = 0;
    st->npad = 0;
    return B64_OK;
}

int b64_stream_finish(b64_stream_t *st)
{
    if (st->err)
        return st->err;
    if (st->nquad != 0)
        return st->err = (st->npad ? B64_ERR_PAD : B64_ERR_LENGTH);
    return B64_OK;
}

int base64_decode(const char *in, uint32_t in_len, uint8_t *out, uint32_t cap,
                  uint32_t *out_len, uint32_t *err_pos)
{
    b64_stream_t st;
    int rc = B64_OK;

    b64_stream_init(&st, out, cap);
    for (uint32_t i = 0; i < in_len; i++) {
        rc = b64_stream_feed(&st, (uint8_t)in[i]);
        if (rc) {
            if (err_pos)
                *err_pos = i;
            return rc;
        }
    }
    rc = b64_stream_finish(&st);
    if (rc && err_pos)
        *err_pos = in_len;
    if (out_len)
        *out_len = st.len;
    return rc;
}

uint32_t base64_decoded_max(uint32_t in_len)
{
    return (in_len / 4) * 3 + 3;
}

const char *base64_strerror(int err)
{
    switch (err) {
    case B64_OK: return "ok";
    case B64_ERR_CHAR: return "invalid base64 character";
    case B64_ERR_PAD: return "misplaced base64 padding";
    case B64_ERR_LENGTH: return "truncated base64 group";
    case B64_ERR_SPACE: return "decoded data too large";
    case B64_ERR_BITS: return "non-canonical base64 (unused bits set)";
    default: return "base64 error";
    }
}
