/* Strict, allocation-free JSON parser.
 *
 * json_parse() tokenizes a whole document into a caller-provided token array
 * (one token per value or object key).  Containers record how many children
 * they have and where their subtree ends, so lookups walk the array without
 * recursion.  Strings stay escaped in the input buffer; the accessors decode
 * them on demand (json_string_copy, json_str_iter_*).
 *
 * Strictness: RFC 8259 grammar only (no comments, trailing commas, single
 * quotes, leading zeros, bare control characters or invalid UTF-8), one
 * top-level value, nesting at most JSON_MAX_DEPTH.  Errors report the byte
 * offset where parsing stopped and a short reason.
 */
#ifndef RT_JSON_H
#define RT_JSON_H

#include <stdint.h>

#define JSON_MAX_DEPTH 16
#define JSON_MAX_TEXT  (1u << 20)

typedef enum {
    JSON_OBJECT = 1,
    JSON_ARRAY,
    JSON_STRING,
    JSON_NUMBER,
    JSON_TRUE,
    JSON_FALSE,
    JSON_NULL,
} json_type_t;

typedef struct {
    uint8_t  type;      /* json_type_t */
    uint16_t count;     /* objects: member pairs; arrays: items */
    uint16_t next;      /* index of the first token after this subtree */
    uint32_t start;     /* strings: first byte after '"'; others: first byte */
    uint32_t end;       /* strings: offset of closing '"'; others: one past last byte */
} json_tok_t;

typedef struct {
    const char *text;
    uint32_t    len;
    json_tok_t *tok;
    uint16_t    ntok;
    uint32_t    err_offset;
    const char *err;    /* NULL when the last parse succeeded */
} json_doc_t;

/* 0 on success (doc->ntok tokens, token 0 is the root); -1 on error with
 * doc->err and doc->err_offset set. */
int json_parse(json_doc_t *doc, const char *text, uint32_t len, json_tok_t *tok, uint16_t cap);

/* Index of the value stored under key in object token obj, or -1. */
int json_object_get(const json_doc_t *doc, int obj, const char *key);
/* Index of item i of array token arr, or -1. */
int json_array_get(const json_doc_t *doc, int arr, uint16_t i);

/* Decoded string (UTF-8, NUL-terminated) into out; returns its length, or -1
 * when tok is not a string, -2 when it does not fit (including the NUL), -3
 * when it contains an escaped NUL (\u0000). */
int json_string_copy(const json_doc_t *doc, int tok, char *out, uint32_t cap);
/* 1 when string token tok decodes to exactly s, else 0. */
int json_string_equals(const json_doc_t *doc, int tok, const char *s);
/* Integer value of a number token: 0 ok, -1 not a number, -2 not an integer
 * (fraction or exponent), -3 out of int32 range. */
int json_int(const json_doc_t *doc, int tok, int32_t *out);

/* Walk the decoded bytes of a string token without copying it. */
typedef struct {
    const char *text;
    uint32_t    pos;
    uint32_t    end;
    uint8_t     pending[4];
    uint8_t     npending;
    uint8_t     ipending;
} json_str_iter_t;

int  json_str_iter_init(json_str_iter_t *it, const json_doc_t *doc, int tok); /* -1 if not a string */
int  json_str_iter_next(json_str_iter_t *it);   /* next byte 0..255, or -1 at the end */

#endif
