#include "fmt.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    char    *out;
    uint32_t cap;
    uint32_t len;
} sink_t;

typedef struct {
    const uint8_t *ap;
} args_t;

enum { F_LEFT = 1, F_PLUS = 2, F_SPACE = 4, F_ZERO = 8, F_ALT = 16 };

static void put(sink_t *s, char c)
{
    if (s->len + 1 < s->cap)
        s->out[s->len++] = c;
}

static uint32_t arg32(args_t *a)
{
    uint32_t v;
    memcpy(&v, a->ap, 4);
    a->ap += 4;
    return v;
}

static uint64_t arg64(args_t *a)
{
    uint64_t v;
    a->ap = (const uint8_t *)(((uintptr_t)a->ap + 7u) & ~(uintptr_t)7u);
    memcpy(&v, a->ap, 8);
    a->ap += 8;
    return v;
}

/* A pointer argument: one word on the target; host builds of the unit tests
 * (64-bit pointers) lay pointers out as aligned 8-byte slots. */
static uintptr_t arg_ptr(args_t *a)
{
    if (sizeof(uintptr_t) == 4)
        return arg32(a);
    return (uintptr_t)arg64(a);
}

static double arg_double(args_t *a)
{
    uint64_t bits = arg64(a);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* Emit prefix + body padded to width (zero padding goes after the prefix). */
static void emit(sink_t *s, const char *prefix, const char *body, uint32_t blen, int width, int flags)
{
    uint32_t plen = (uint32_t)strlen(prefix);
    int pad = width - (int)(plen + blen);

    if (!(flags & F_LEFT) && !(flags & F_ZERO))
        for (; pad > 0; pad--)
            put(s, ' ');
    for (uint32_t i = 0; i < plen; i++)
        put(s, prefix[i]);
    if (!(flags & F_LEFT) && (flags & F_ZERO))
        for (; pad > 0; pad--)
            put(s, '0');
    for (uint32_t i = 0; i < blen; i++)
        put(s, body[i]);
    for (; pad > 0; pad--)
        put(s, ' ');
}

/* Digits of v in base, most significant first, at least min_digits long. */
static uint32_t utoa_buf(char *buf, uint64_t v, unsigned base, int upper, int min_digits)
{
    char tmp[24];
    uint32_t n = 0;
    const char *dig = upper ? "0123456789ABCDEF" : "0123456789abcdef";

    while (v) {
        tmp[n++] = dig[v % base];
        v /= base;
    }
    while ((int)n < min_digits && n < sizeof(tmp))
        tmp[n++] = '0';
    for (uint32_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static void fmt_int(sink_t *s, uint64_t mag, int neg, unsigned base, int upper, int width, int prec,
                    int flags, char conv)
{
    char body[32];
    char prefix[4] = "";
    uint32_t n;

    if (prec >= 0)
        flags &= ~F_ZERO;
    n = utoa_buf(body, mag, base, upper, prec < 0 ? 1 : prec);
    if (neg)
        strcpy(prefix, "-");
    else if ((conv == 'd' || conv == 'i') && (flags & F_PLUS))
        strcpy(prefix, "+");
    else if ((conv == 'd' || conv == 'i') && (flags & F_SPACE))
        strcpy(prefix, " ");
    if ((flags & F_ALT) && mag != 0) {
        if (base == 16)
            strcat(prefix, upper ? "0X" : "0x");
        else if (base == 8 && body[0] != '0')
            strcat(prefix, "0");
    }
    emit(s, prefix, body, n, width, flags);
}

static const double pow10_table[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* Fixed notation of v >= 0 with prec (<= 9) fraction digits; trailing
 * fraction zeros removed when strip is set. */
static uint32_t fixed_body(char *buf, double v, int prec, int alt, int strip)
{
    uint64_t scale = (uint64_t)pow10_table[prec];
    uint64_t ip = (uint64_t)v;
    uint64_t fr = (uint64_t)((v - (double)ip) * (double)scale + 0.5);
    uint32_t n;

    if (fr >= scale) {
        fr -= scale;
        ip++;
    }
    n = utoa_buf(buf, ip, 10, 0, 1);
    if (prec > 0 || alt) {
        uint32_t dot = n;
        buf[n++] = '.';
        if (prec > 0)
            n += utoa_buf(buf + n, fr, 10, 0, prec);
        if (strip) {
            while (n > dot + 1 && buf[n - 1] == '0')
                n--;
            if (n == dot + 1 && !alt)
                n = dot;
        }
    }
    return n;
}

/* Scientific notation of v >= 0. */
static uint32_t exp_body(char *buf, double v, int prec, int upper, int alt, int strip)
{
    int e = 0;
    uint32_t n;

    if (v != 0.0) {
        while (v >= 10.0) {
            v /= 10.0;
            e++;
        }
        while (v < 1.0) {
            v *= 10.0;
            e--;
        }
        /* Rounding the mantissa may carry into a new digit (9.99 -> 10.0). */
        double r = v + 0.5 / pow10_table[prec];
        if (r >= 10.0) {
            v /= 10.0;
            e++;
        }
    }
    n = fixed_body(buf, v, prec, alt, strip);
    buf[n++] = upper ? 'E' : 'e';
    buf[n++] = e < 0 ? '-' : '+';
    n += utoa_buf(buf + n, (uint64_t)(e < 0 ? -e : e), 10, 0, 2);
    return n;
}

static void fmt_float(sink_t *s, double v, char conv, int width, int prec, int flags)
{
    char body[48];
    char prefix[2] = "";
    uint32_t n;
    int upper = conv == 'F' || conv == 'E' || conv == 'G';
    uint64_t bits;

    memcpy(&bits, &v, 8);
    if (bits >> 63) {
        prefix[0] = '-';
        v = -v;
    } else if (flags & F_PLUS) {
        prefix[0] = '+';
    } else if (flags & F_SPACE) {
        prefix[0] = ' ';
    }
    if (v != v || v > 1.7976931348623157e308) {
        strcpy(body, v != v ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf"));
        emit(s, prefix, body, 3, width, flags & ~F_ZERO);
        return;
    }
    if (prec < 0)
        prec = 6;
    if (prec > 9)
        prec = 9;   /* beyond what a single-precision reading carries */

    switch (conv) {
    case 'e': case 'E':
        n = exp_body(body, v, prec, upper, flags & F_ALT, 0);
        break;
    case 'g': case 'G': {
        int p = prec == 0 ? 1 : prec;
        int e = 0;
        double t = v;
        if (t != 0.0) {
            while (t >= 10.0) { t /= 10.0; e++; }
            while (t < 1.0) { t *= 10.0; e--; }
            if (t + 0.5 / pow10_table[p - 1] >= 10.0)
                e++;
        }
        int strip = !(flags & F_ALT);
        if (e < -4 || e >= p)
            n = exp_body(body, v, p - 1, upper, flags & F_ALT, strip);
        else
            n = fixed_body(body, v, p - 1 - e > 9 ? 9 : p - 1 - e, flags & F_ALT, strip);
        break;
    }
    default:
        if (v >= 1e18)
            n = exp_body(body, v, prec, upper, flags & F_ALT, 0);
        else
            n = fixed_body(body, v, prec, flags & F_ALT, 0);
        break;
    }
    emit(s, prefix, body, n, width, flags);
}

uint32_t rt_vformat(char *out, uint32_t cap, const char *fmt, const void *va)
{
    sink_t s = {out, cap, 0};
    args_t a = {(const uint8_t *)va};

    if (cap == 0)
        return 0;
    while (*fmt) {
        char c = *fmt++;
        if (c != '%') {
            put(&s, c);
            continue;
        }
        int flags = 0, width = 0, prec = -1, lng = 0;
        for (;; fmt++) {
            if (*fmt == '-') flags |= F_LEFT;
            else if (*fmt == '+') flags |= F_PLUS;
            else if (*fmt == ' ') flags |= F_SPACE;
            else if (*fmt == '0') flags |= F_ZERO;
            else if (*fmt == '#') flags |= F_ALT;
            else break;
        }
        if (*fmt == '*') {
            width = (int32_t)arg32(&a);
            if (width < 0) {
                flags |= F_LEFT;
                width = -width;
            }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = (int32_t)arg32(&a);
                if (prec < 0)
                    prec = -1;
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }
        if (width > 128)
            width = 128;
        if (prec > 64)
            prec = 64;
        /* On the 32-bit target only "ll" (and j) widen an integer argument. */
        for (;; fmt++) {
            if (*fmt == 'l') lng++;
            else if (*fmt == 'j') lng = 2;
            else if (*fmt == 'h' || *fmt == 'z' || *fmt == 't' || *fmt == 'L') continue;
            else break;
        }
        c = *fmt;
        if (c == '\0')
            break;
        fmt++;
        switch (c) {
        case 'd':
        case 'i': {
            int64_t v = lng >= 2 ? (int64_t)arg64(&a) : (int64_t)(int32_t)arg32(&a);
            uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            fmt_int(&s, mag, v < 0, 10, 0, width, prec, flags, c);
            break;
        }
        case 'u': case 'x': case 'X': case 'o': {
            uint64_t v = lng >= 2 ? arg64(&a) : arg32(&a);
            unsigned base = c == 'u' ? 10 : c == 'o' ? 8 : 16;
            fmt_int(&s, v, 0, base, c == 'X', width, prec, flags, c);
            break;
        }
        case 'p':
            fmt_int(&s, arg_ptr(&a), 0, 16, 0, width, prec, flags | F_ALT, 'p');
            break;
        case 'c': {
            char ch = (char)arg32(&a);
            emit(&s, "", &ch, 1, width, flags & ~F_ZERO);
            break;
        }
        case 's': {
            const char *str = (const char *)arg_ptr(&a);
            uint32_t n = 0;
            if (str == NULL)
                str = "(null)";
            while (str[n] && (prec < 0 || (int)n < prec) && n < cap)
                n++;
            emit(&s, "", str, n, width, flags & ~F_ZERO);
            break;
        }
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G':
            fmt_float(&s, arg_double(&a), c, width, prec, flags);
            break;
        case '%':
            put(&s, '%');
            break;
        default:
            /* Unknown conversion: show it rather than guess its argument size. */
            put(&s, '%');
            put(&s, c);
            break;
        }
    }
    s.out[s.len] = '\0';
    return s.len;
}
