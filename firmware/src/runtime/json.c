#include "json.h"

#include <stddef.h>

enum {
    S_VALUE,            /* a value must follow */
    S_VALUE_OR_CLOSE,   /* just after '[' */
    S_KEY,              /* after ',' in an object */
    S_KEY_OR_CLOSE,     /* just after '{' */
    S_COLON,
    S_COMMA_OR_CLOSE,
    S_DONE,
};

static int fail(json_doc_t *d, uint32_t off, const char *msg)
{
    d->err = msg;
    d->err_offset = off;
    return -1;
}

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at text[i..i+3]; -1 when missing or malformed. */
static int32_t read_hex4(const uint8_t *s, uint32_t len, uint32_t i)
{
    int32_t v = 0;
    if (i + 4 > len)
        return -1;
    for (uint32_t k = 0; k < 4; k++) {
        int h = hex_value(s[i + k]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when it is malformed. */
static uint32_t utf8_seq_len(const uint8_t *s, uint32_t avail)
{
    uint8_t c = s[0];
    uint32_t n;
    uint8_t lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (uint32_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return n;
}

/* i is just past the opening quote; on success *close is the closing quote. */
static int scan_string(json_doc_t *d, uint32_t i, uint32_t *close)
{
    const uint8_t *s = (const uint8_t *)d->text;
    uint32_t len = d->len;

    while (i < len) {
        uint8_t c = s[i];
        if (c == '"') {
            *close = i;
            return 0;
        }
        if (c < 0x20)
            return fail(d, i, "control character in string");
        if (c == '\\') {
            if (i + 1 >= len)
                break;
            switch (s[i + 1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                i += 2;
                continue;
            case 'u': {
                int32_t cp = read_hex4(s, len, i + 2);
                if (cp < 0)
                    return fail(d, i, "bad \\u escape");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return fail(d, i, "unpaired surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    int32_t low = -1;
                    if (i + 7 < len && s[i + 6] == '\\' && s[i + 7] == 'u')
                        low = read_hex4(s, len, i + 8);
                    if (low < 0xDC00 || low > 0xDFFF)
                        return fail(d, i, "unpaired surrogate in \\u escape");
                    i += 6;
                }
                i += 6;
                continue;
            }
            default:
                return fail(d, i, "bad escape in string");
            }
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t n = utf8_seq_len(s + i, len - i);
        if (n == 0)
            return fail(d, i, "invalid UTF-8 in string");
        i += n;
    }
    return fail(d, len, "unterminated string");
}

static int scan_number(json_doc_t *d, uint32_t i, uint32_t *end)
{
    const uint8_t *s = (const uint8_t *)d->text;
    uint32_t len = d->len;
    uint32_t start = i;

    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && s[i] >= '1' && s[i] <= '9') {
        while (i < len && is_digit(s[i]))
            i++;
    } else {
        return fail(d, start, "bad number");
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || !is_digit(s[i]))
            return fail(d, start, "bad number: digits must follow '.'");
        while (i < len && is_digit(s[i]))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !is_digit(s[i]))
            return fail(d, start, "bad number: digits must follow the exponent");
        while (i < len && is_digit(s[i]))
            i++;
    }
    *end = i;
    return 0;
}

static int scan_literal(json_doc_t *d, uint32_t i, const char *word, uint32_t *end)
{
    uint32_t k = 0;
    while (word[k]) {
        if (i + k >= d->len || d->text[i + k] != word[k])
            return fail(d, i, "unexpected character");
        k++;
    }
    *end = i + k;
    return 0;
}

static int new_token(json_doc_t *d, uint16_t cap, uint8_t type, uint32_t start)
{
    if (d->ntok >= cap)
        return fail(d, start, "too many tokens");
    json_tok_t *t = &d->tok[d->ntok];
    t->type = type;
    t->count = 0;
    t->next = (uint16_t)(d->ntok + 1);
    t->start = start;
    t->end = start;
    return d->ntok++;
}

int json_parse(json_doc_t *d, const char *text, uint32_t len, json_tok_t *tok, uint16_t cap)
{
    uint16_t stack[JSON_MAX_DEPTH];
    int depth = 0;
    int st = S_VALUE;
    uint32_t i = 0;

    d->text = text;
    d->len = len;
    d->tok = tok;
    d->ntok = 0;
    d->err = NULL;
    d->err_offset = 0;
    if (text == NULL || tok == NULL)
        return fail(d, 0, "no input");
    if (len > JSON_MAX_TEXT)
        return fail(d, 0, "document too large");

    for (;;) {
        while (i < len && is_ws((uint8_t)text[i]))
            i++;
        if (i >= len)
            break;
        uint8_t c = (uint8_t)text[i];
        json_tok_t *parent = depth ? &tok[stack[depth - 1]] : NULL;

        if (st == S_DONE)
            return fail(d, i, "trailing characters after the document");
        if (st == S_COLON) {
            if (c != ':')
                return fail(d, i, "expected ':'");
            i++;
            st = S_VALUE;
            continue;
        }
        if (st == S_COMMA_OR_CLOSE) {
            if (c == ',') {
                i++;
                st = parent->type == JSON_OBJECT ? S_KEY : S_VALUE;
                continue;
            }
            if (!((c == '}' && parent->type == JSON_OBJECT) ||
                  (c == ']' && parent->type == JSON_ARRAY)))
                return fail(d, i, parent->type == JSON_OBJECT ? "expected ',' or '}'"
                                                              : "expected ',' or ']'");
        }
        if ((c == '}' && (st == S_KEY_OR_CLOSE || st == S_COMMA_OR_CLOSE) && parent->type == JSON_OBJECT) ||
            (c == ']' && (st == S_VALUE_OR_CLOSE || st == S_COMMA_OR_CLOSE) && parent->type == JSON_ARRAY)) {
            parent->end = i + 1;
            parent->next = d->ntok;
            depth--;
            i++;
            st = depth ? S_COMMA_OR_CLOSE : S_DONE;
            continue;
        }
        if (st == S_KEY || st == S_KEY_OR_CLOSE) {
            uint32_t close;
            if (c != '"')
                return fail(d, i, "expected a string key");
            int t = new_token(d, cap, JSON_STRING, i + 1);
            if (t < 0 || scan_string(d, i + 1, &close) < 0)
                return -1;
            tok[t].end = close;
            if (parent->count == UINT16_MAX)
                return fail(d, i, "too many members");
            parent->count++;
            i = close + 1;
            st = S_COLON;
            continue;
        }

        /* A value. */
        if (parent && parent->type == JSON_ARRAY) {
            if (parent->count == UINT16_MAX)
                return fail(d, i, "too many items");
            parent->count++;
        }
        uint32_t end;
        int t;
        switch (c) {
        case '{':
        case '[':
            if (depth >= JSON_MAX_DEPTH)
                return fail(d, i, "nesting too deep");
            t = new_token(d, cap, c == '{' ? JSON_OBJECT : JSON_ARRAY, i);
            if (t < 0)
                return -1;
            stack[depth++] = (uint16_t)t;
            i++;
            st = c == '{' ? S_KEY_OR_CLOSE : S_VALUE_OR_CLOSE;
            continue;
        case '"':
            t = new_token(d, cap, JSON_STRING, i + 1);
            if (t < 0 || scan_string(d, i + 1, &end) < 0)
                return -1;
            tok[t].end = end;
            i = end + 1;
            break;
        case 't':
        case 'f':
        case 'n':
            t = new_token(d, cap, c == 't' ? JSON_TRUE : c == 'f' ? JSON_FALSE : JSON_NULL, i);
            if (t < 0 ||
                scan_literal(d, i, c == 't' ? "true" : c == 'f' ? "false" : "null", &end) < 0)
                return -1;
            tok[t].end = end;
            i = end;
            break;
        default:
            if (c != '-' && !is_digit(c))
                return fail(d, i, "unexpected character");
            t = new_token(d, cap, JSON_NUMBER, i);
            if (t < 0 || scan_number(d, i, &end) < 0)
                return -1;
            tok[t].end = end;
            i = end;
            break;
        }
        st = depth ? S_COMMA_OR_CLOSE : S_DONE;
    }

    if (st != S_DONE)
        return fail(d, len, d->ntok == 0 ? "empty document" : "unexpected end of document");
    return 0;
}

int json_object_get(const json_doc_t *d, int obj, const char *key)
{
    if (obj < 0 || obj >= d->ntok || d->tok[obj].type != JSON_OBJECT)
        return -1;
    int k = obj + 1;
    for (uint16_t n = 0; n < d->tok[obj].count; n++) {
        int v = k + 1;
        if (json_string_equals(d, k, key))
            return v;
        k = d->tok[v].next;
    }
    return -1;
}

int json_array_get(const json_doc_t *d, int arr, uint16_t i)
{
    if (arr < 0 || arr >= d->ntok || d->tok[arr].type != JSON_ARRAY || i >= d->tok[arr].count)
        return -1;
    int t = arr + 1;
    while (i--)
        t = d->tok[t].next;
    return t;
}

int json_str_iter_init(json_str_iter_t *it, const json_doc_t *d, int tok)
{
    if (tok < 0 || tok >= d->ntok || d->tok[tok].type != JSON_STRING)
        return -1;
    it->text = d->text;
    it->pos = d->tok[tok].start;
    it->end = d->tok[tok].end;
    it->npending = 0;
    it->ipending = 0;
    return 0;
}

/* The parser validated the string, so escapes here are well formed. */
int json_str_iter_next(json_str_iter_t *it)
{
    const uint8_t *s = (const uint8_t *)it->text;

    if (it->ipending < it->npending)
        return it->pending[it->ipending++];
    if (it->pos >= it->end)
        return -1;
    uint8_t c = s[it->pos];
    if (c != '\\') {
        it->pos++;
        return c;
    }
    uint8_t e = s[it->pos + 1];
    it->pos += 2;
    switch (e) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': break;
    default: return e;      /* '"', '\\', '/' */
    }
    uint32_t cp = (uint32_t)read_hex4(s, it->end, it->pos);
    it->pos += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t low = (uint32_t)read_hex4(s, it->end, it->pos + 2);
        it->pos += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    uint8_t *p = it->pending;
    if (cp < 0x80) {
        p[0] = (uint8_t)cp;
        it->npending = 1;
    } else if (cp < 0x800) {
        p[0] = (uint8_t)(0xC0 | (cp >> 6));
        p[1] = (uint8_t)(0x80 | (cp & 0x3F));
        it->npending = 2;
    } else if (cp < 0x10000) {
        p[0] = (uint8_t)(0xE0 | (cp >> 12));
        p[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        p[2] = (uint8_t)(0x80 | (cp & 0x3F));
        it->npending = 3;
    } else {
        p[0] = (uint8_t)(0xF0 | (cp >> 18));
        p[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        p[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        p[3] = (uint8_t)(0x80 | (cp & 0x3F));
        it->npending = 4;
    }
    it->ipending = 1;
    return p[0];
}

int json_string_copy(const json_doc_t *d, int tok, char *out, uint32_t cap)
{
    json_str_iter_t it;
    uint32_t n = 0;
    int c;

    if (json_str_iter_init(&it, d, tok) < 0)
        return -1;
    while ((c = json_str_iter_next(&it)) >= 0) {
        if (c == 0)
            return -3;
        if (n + 1 >= cap)
            return -2;
        out[n++] = (char)c;
    }
    if (cap == 0)
        return -2;
    out[n] = '\0';
    return (int)n;
}

int json_string_equals(const json_doc_t *d, int tok, const char *s)
{
    json_str_iter_t it;
    int c;

    if (json_str_iter_init(&it, d, tok) < 0)
        return 0;
    while ((c = json_str_iter_next(&it)) >= 0) {
        if (*s == '\0' || (uint8_t)*s != c)
            return 0;
        s++;
    }
    return *s == '\0';
}

int json_int(const json_doc_t *d, int tok, int32_t *out)
{
    if (tok < 0 || tok >= d->ntok || d->tok[tok].type != JSON_NUMBER)
        return -1;
    const char *s = d->text + d->tok[tok].start;
    const char *e = d->text + d->tok[tok].end;
    int neg = 0;
    int64_t v = 0;

    if (*s == '-') {
        neg = 1;
        s++;
    }
    for (; s < e; s++) {
        if (!is_digit((uint8_t)*s))
            return -2;
        v = v * 10 + (*s - '0');
        if (v > (int64_t)INT32_MAX + 1)
            return -3;
    }
    if (neg)
        v = -v;
    if (v > INT32_MAX || v < INT32_MIN)
        return -3;
    *out = (int32_t)v;
    return 0;
}
