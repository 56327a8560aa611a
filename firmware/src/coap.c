/* CoAP message codec and endpoint (RFC 7252, RFC 7959 Block1/Block2, RFC 7641 Observe). */
#include "coap.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ codec */

/* Reads an option delta or length nibble with its extension bytes. */
static int read_ext(uint8_t nibble, const uint8_t *buf, size_t len, size_t *pos, uint32_t *out)
{
    if (nibble < 13) {
        *out = nibble;
        return 0;
    }
    if (nibble == 13) {
        if (len - *pos < 1)
            return -1;
        *out = 13u + buf[*pos];
        *pos += 1;
        return 0;
    }
    if (nibble == 14) {
        if (len - *pos < 2)
            return -1;
        *out = 269u + (((uint32_t)buf[*pos] << 8) | buf[*pos + 1]);
        *pos += 2;
        return 0;
    }
    return -1; /* 15 is reserved outside the payload marker */
}

int coap_parse(coap_msg_t *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof(*m));
    if (buf == NULL || len < 4)
        return COAP_PARSE_SHORT;
    m->type = (buf[0] >> 4) & 3u;
    m->tkl = buf[0] & 15u;
    m->code = buf[1];
    m->mid = (uint16_t)((buf[2] << 8) | buf[3]);
    if ((buf[0] >> 6) != 1)
        return COAP_PARSE_VERSION;
    if (m->tkl > COAP_MAX_TOKEN) {
        m->tkl = 0;
        return COAP_PARSE_FORMAT;
    }
    if (m->code == COAP_EMPTY) {
        /* an Empty message is the 4-byte header and nothing else */
        if (m->tkl != 0 || len != 4)
            return COAP_PARSE_FORMAT;
        return COAP_PARSE_OK;
    }
    if (len < 4u + m->tkl) {
        m->tkl = 0;
        return COAP_PARSE_FORMAT;
    }
    memcpy(m->token, buf + 4, m->tkl);

    size_t pos = 4u + m->tkl;
    uint32_t last = 0;
    while (pos < len) {
        uint8_t b = buf[pos++];
        if (b == 0xFF) {
            if (pos == len)
                return COAP_PARSE_FORMAT; /* marker followed by an empty payload */
            if (len - pos > 0xFFFFu)
                return COAP_PARSE_FORMAT;
            m->payload = buf + pos;
            m->payload_len = (uint16_t)(len - pos);
            return COAP_PARSE_OK;
        }
        uint32_t delta, olen;
        if (read_ext(b >> 4, buf, len, &pos, &delta) < 0)
            return COAP_PARSE_FORMAT;
        if (read_ext(b & 15u, buf, len, &pos, &olen) < 0)
            return COAP_PARSE_FORMAT;
        if (olen > len - pos)
            return COAP_PARSE_FORMAT;
        last += delta;
        if (last > 0xFFFFu)
            return COAP_PARSE_FORMAT;
        if (m->n_opts == COAP_MAX_OPTIONS)
            return COAP_PARSE_TOO_MANY;
        coap_option_t *o = &m->opts[m->n_opts++];
        o->num = (uint16_t)last;
        o->len = (uint16_t)olen;
        o->val = buf + pos;
        pos += olen;
    }
    return COAP_PARSE_OK;
}

const coap_option_t *coap_find_option(const coap_msg_t *m, uint16_t num, const coap_option_t *prev)
{
    int i = prev ? (int)(prev - m->opts) + 1 : 0;
    for (; i < m->n_opts; i++)
        if (m->opts[i].num == num)
            return &m->opts[i];
    return NULL;
}

static uint32_t opt_uint(const coap_option_t *o)
{
    uint32_t v = 0;
    for (uint16_t i = 0; i < o->len; i++)
        v = (v << 8) | o->val[i];
    return v;
}

int coap_get_uint(const coap_msg_t *m, uint16_t num, uint32_t *out)
{
    const coap_option_t *o = coap_find_option(m, num, NULL);
    if (o == NULL)
        return 0;
    if (o->len > 4)
        return -1;
    *out = opt_uint(o);
    return 1;
}

uint16_t coap_get_format(const coap_msg_t *m, uint16_t num)
{
    uint32_t v;
    if (coap_get_uint(m, num, &v) != 1 || v > 0xFFFEu)
        return COAP_CF_NONE;
    return (uint16_t)v;
}

/* Options this endpoint understands, with the value lengths RFC 7252/7959/7641 allow. */
static const struct { uint16_t num; uint16_t min, max; uint8_t understood; } known_options[] = {
    { COAP_OPT_IF_MATCH, 0, 8, 0 },        { COAP_OPT_URI_HOST, 1, 255, 1 },
    { COAP_OPT_ETAG, 1, 8, 1 },            { COAP_OPT_IF_NONE_MATCH, 0, 0, 0 },
    { COAP_OPT_OBSERVE, 0, 3, 1 },         { COAP_OPT_URI_PORT, 0, 2, 1 },
    { COAP_OPT_LOCATION_PATH, 0, 255, 1 }, { COAP_OPT_URI_PATH, 0, 255, 1 },
    { COAP_OPT_CONTENT_FORMAT, 0, 2, 1 },  { COAP_OPT_MAX_AGE, 0, 4, 1 },
    { COAP_OPT_URI_QUERY, 0, 255, 1 },     { COAP_OPT_ACCEPT, 0, 2, 1 },
    { COAP_OPT_LOCATION_QUERY, 0, 255, 1 },{ COAP_OPT_BLOCK2, 0, 3, 1 },
    { COAP_OPT_BLOCK1, 0, 3, 1 },          { COAP_OPT_SIZE2, 0, 4, 1 },
    { COAP_OPT_PROXY_URI, 1, 1034, 0 },    { COAP_OPT_PROXY_SCHEME, 1, 255, 0 },
    { COAP_OPT_SIZE1, 0, 4, 1 },
};

uint16_t coap_unknown_critical(const coap_msg_t *m)
{
    for (int i = 0; i < m->n_opts; i++) {
        const coap_option_t *o = &m->opts[i];
        if (!COAP_OPT_IS_CRITICAL(o->num))
            continue;
        int ok = 0;
        for (size_t k = 0; k < sizeof(known_options) / sizeof(known_options[0]); k++) {
            if (known_options[k].num == o->num) {
                /* a value of a length outside the option's range counts as unrecognised */
                ok = known_options[k].understood && o->len >= known_options[k].min && o->len <= known_options[k].max;
                break;
            }
        }
        if (!ok)
            return o->num;
    }
    return 0;
}

uint32_t coap_block_value(uint32_t num, int more, uint8_t szx)
{
    return (num << 4) | (more ? 8u : 0u) | (szx & 7u);
}

int coap_block_parse(uint32_t value, uint32_t *num, int *more, uint8_t *szx)
{
    if ((value & 7u) == 7u)
        return -1;
    *num = value >> 4;
    *more = (value & 8u) != 0;
    *szx = (uint8_t)(value & 7u);
    return 0;
}

void coap_pdu_init(coap_pdu_t *p, uint8_t type, uint8_t code, uint16_t mid,
                   const uint8_t *token, uint8_t tkl, uint8_t *payload_buf, uint16_t payload_cap)
{
    memset(p, 0, offsetof(coap_pdu_t, opt_data));
    p->type = type;
    p->code = code;
    p->mid = mid;
    p->tkl = tkl > COAP_MAX_TOKEN ? COAP_MAX_TOKEN : tkl;
    if (token && p->tkl)
        memcpy(p->token, token, p->tkl);
    p->payload = payload_buf;
    p->payload_cap = payload_buf ? payload_cap : 0;
    p->payload_len = 0;
}

int coap_pdu_add_option(coap_pdu_t *p, uint16_t num, const void *val, uint16_t len)
{
    if (p->n_opts == COAP_MAX_OPTIONS || len > COAP_PDU_OPT_BYTES - p->opt_used) {
        p->err = 1;
        return -1;
    }
    p->opts[p->n_opts].num = num;
    p->opts[p->n_opts].off = p->opt_used;
    p->opts[p->n_opts].len = len;
    if (len)
        memcpy(p->opt_data + p->opt_used, val, len);
    p->opt_used += len;
    p->n_opts++;
    return 0;
}

int coap_pdu_add_uint(coap_pdu_t *p, uint16_t num, uint32_t v)
{
    uint8_t b[4];
    uint16_t n = 0;
    /* minimal big-endian encoding: 0 is the empty value */
    for (int shift = 24; shift >= 0; shift -= 8) {
        uint8_t byte = (uint8_t)(v >> shift);
        if (n || byte)
            b[n++] = byte;
    }
    return coap_pdu_add_option(p, num, b, n);
}

int coap_pdu_add_str(coap_pdu_t *p, uint16_t num, const char *s)
{
    size_t n = strlen(s);
    if (n > 0xFFFFu) {
        p->err = 1;
        return -1;
    }
    return coap_pdu_add_option(p, num, s, (uint16_t)n);
}

void coap_pdu_remove_option(coap_pdu_t *p, uint16_t num)
{
    uint8_t w = 0;
    for (uint8_t i = 0; i < p->n_opts; i++)
        if (p->opts[i].num != num)
            p->opts[w++] = p->opts[i];
    p->n_opts = w; /* the value bytes stay in opt_data, unreferenced */
}

int coap_pdu_has_option(const coap_pdu_t *p, uint16_t num)
{
    for (uint8_t i = 0; i < p->n_opts; i++)
        if (p->opts[i].num == num)
            return 1;
    return 0;
}

int coap_pdu_set_payload(coap_pdu_t *p, const void *data, uint16_t len)
{
    if (len > p->payload_cap) {
        p->payload_len = 0;
        return -1;
    }
    if (len)
        memmove(p->payload, data, len);
    p->payload_len = len;
    return 0;
}

void coap_pdu_printf(coap_pdu_t *p, const char *fmt, ...)
{
    if (p->payload == NULL || p->payload_len >= p->payload_cap)
        return;
    size_t room = (size_t)(p->payload_cap - p->payload_len);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)p->payload + p->payload_len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= room)
        n = (int)room - 1; /* drop the terminator vsnprintf wrote */
    p->payload_len = (uint16_t)(p->payload_len + n);
}

static size_t put_ext_header(uint8_t *out, uint32_t delta, uint32_t len)
{
    uint8_t ext[4];
    size_t n = 0;
    uint8_t dn, ln;
    if (delta < 13) {
        dn = (uint8_t)delta;
    } else if (delta < 269) {
        dn = 13;
        ext[n++] = (uint8_t)(delta - 13);
    } else {
        dn = 14;
        ext[n++] = (uint8_t)((delta - 269) >> 8);
        ext[n++] = (uint8_t)(delta - 269);
    }
    if (len < 13) {
        ln = (uint8_t)len;
    } else if (len < 269) {
        ln = 13;
        ext[n++] = (uint8_t)(len - 13);
    } else {
        ln = 14;
        ext[n++] = (uint8_t)((len - 269) >> 8);
        ext[n++] = (uint8_t)(len - 269);
    }
    out[0] = (uint8_t)((dn << 4) | ln);
    memcpy(out + 1, ext, n);
    return 1 + n;
}

int coap_serialize(const coap_pdu_t *p, uint8_t *out, size_t cap)
{
    if (p->err || cap < 4u + p->tkl)
        return -1;
    out[0] = (uint8_t)(0x40 | (p->type << 4) | p->tkl);
    out[1] = p->code;
    out[2] = (uint8_t)(p->mid >> 8);
    out[3] = (uint8_t)p->mid;
    memcpy(out + 4, p->token, p->tkl);
    size_t pos = 4u + p->tkl;

    /* stable order by option number: repeated options keep the order they were added in */
    uint8_t order[COAP_MAX_OPTIONS];
    for (uint8_t i = 0; i < p->n_opts; i++) {
        uint8_t j = i;
        while (j > 0 && p->opts[order[j - 1]].num > p->opts[i].num) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    uint16_t last = 0;
    for (uint8_t k = 0; k < p->n_opts; k++) {
        uint8_t i = order[k];
        uint16_t len = p->opts[i].len;
        if (cap - pos < 5u + len)
            return -1;
        pos += put_ext_header(out + pos, (uint32_t)(p->opts[i].num - last), len);
        memcpy(out + pos, p->opt_data + p->opts[i].off, len);
        pos += len;
        last = p->opts[i].num;
    }
    if (p->payload_len) {
        if (cap - pos < 1u + p->payload_len)
            return -1;
        out[pos++] = 0xFF;
        memcpy(out + pos, p->payload, p->payload_len);
        pos += p->payload_len;
    }
    return (int)pos;
}

/* --------------------------------------------------------------- endpoint */

#define MAX_EXCHANGES 6
#define DEDUP_ENTRIES 8
#define SEPARATE_RESPONSE_WAIT_MS 60000u
#define BLOCK1_IDLE_MS 60000u
#define TX_RETRY_MS 100u      /* when the network could not send (e.g. ARP pending) */
#define TX_RETRY_LIMIT 30u

enum { EX_FREE = 0, EX_WAIT_ACK, EX_WAIT_RESPONSE };

typedef struct {
    uint8_t state;
    uint8_t retransmits;
    uint8_t tx_failures;
    int8_t observer;          /* >= 0: this is a notification of that observer */
    coap_peer_t peer;
    uint16_t mid;
    uint8_t tkl;
    uint8_t token[COAP_MAX_TOKEN];
    uint32_t timeout_ms;      /* current retransmission timeout */
    uint32_t next_ms;         /* next retransmission or the give-up time */
    coap_response_fn cb;
    void *arg;
    uint16_t len;
    uint8_t buf[COAP_MAX_DATAGRAM];
} exchange_t;

typedef struct {
    uint8_t used;
    coap_peer_t peer;
    uint16_t mid;
    uint32_t t_ms;
    uint16_t len;             /* 0: seen, nothing to resend */
    uint8_t buf[COAP_MAX_DATAGRAM];
} dedup_t;

typedef struct {
    uint8_t active;
    uint8_t code;
    coap_peer_t peer;
    uint32_t uri_hash;
    uint32_t received;
    uint32_t last_ms;
    uint8_t buf[COAP_BLOCK1_MAX];
} block1_t;

static coap_tx_fn g_tx;
static coap_request_fn g_on_request;
static uint32_t g_rand = 0x2545F491u;
static uint16_t g_mid;
static uint32_t g_obs_clock;
static coap_stats_t g_stats;
static exchange_t g_ex[MAX_EXCHANGES];
static dedup_t g_dedup[DEDUP_ENTRIES];
static block1_t g_b1;
static coap_observer_t g_obs[COAP_MAX_OBSERVERS];
static uint8_t g_txbuf[COAP_MAX_DATAGRAM];
static uint8_t g_rsp_payload[COAP_MAX_PAYLOAD];
static coap_pdu_t g_rsp;

static int due(uint32_t now, uint32_t t) { return (int32_t)(now - t) >= 0; }

static int same_peer(const coap_peer_t *a, const coap_peer_t *b)
{
    return a->ip == b->ip && a->port == b->port;
}

uint32_t coap_random(void)
{
    /* xorshift32: enough to spread message ids, tokens and retransmission jitter */
    uint32_t x = g_rand;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    g_rand = x;
    return x;
}

static uint16_t next_mid(void) { return ++g_mid; }

const coap_stats_t *coap_stats(void) { return &g_stats; }

void coap_init(coap_tx_fn tx, coap_request_fn on_request, uint32_t seed)
{
    g_tx = tx;
    g_on_request = on_request;
    g_rand = seed ? seed : 0x2545F491u;
    for (int i = 0; i < 4; i++)
        coap_random();
    g_mid = (uint16_t)coap_random();
    g_obs_clock = coap_random() & 0xFFFu;
    memset(&g_stats, 0, sizeof(g_stats));
    memset(g_ex, 0, sizeof(g_ex));
    memset(g_dedup, 0, sizeof(g_dedup));
    memset(g_obs, 0, sizeof(g_obs));
    g_b1.active = 0;
}

static int transmit(const coap_peer_t *to, const uint8_t *data, uint16_t len)
{
    if (g_tx == NULL)
        return -1;
    g_stats.tx++;
    return g_tx(to, data, len);
}

static void send_empty(const coap_peer_t *to, uint8_t type, uint16_t mid)
{
    uint8_t b[4] = { (uint8_t)(0x40 | (type << 4)), 0, (uint8_t)(mid >> 8), (uint8_t)mid };
    if (type == COAP_RST)
        g_stats.rst_sent++;
    transmit(to, b, 4);
}

static dedup_t *dedup_find(const coap_peer_t *peer, uint16_t mid, uint32_t now)
{
    for (int i = 0; i < DEDUP_ENTRIES; i++) {
        dedup_t *d = &g_dedup[i];
        if (d->used && d->mid == mid && same_peer(&d->peer, peer)) {
            if (now - d->t_ms > COAP_EXCHANGE_LIFETIME_MS) {
                d->used = 0;
                return NULL;
            }
            return d;
        }
    }
    return NULL;
}

static void dedup_store(const coap_peer_t *peer, uint16_t mid, const uint8_t *data, uint16_t len, uint32_t now)
{
    dedup_t *slot = NULL;
    for (int i = 0; i < DEDUP_ENTRIES && !slot; i++)
        if (!g_dedup[i].used)
            slot = &g_dedup[i];
    if (slot == NULL) {
        slot = &g_dedup[0];
        for (int i = 1; i < DEDUP_ENTRIES; i++)
            if ((int32_t)(g_dedup[i].t_ms - slot->t_ms) < 0)
                slot = &g_dedup[i];
    }
    slot->used = 1;
    slot->peer = *peer;
    slot->mid = mid;
    slot->t_ms = now;
    slot->len = (data && len <= sizeof(slot->buf)) ? len : 0;
    if (slot->len)
        memcpy(slot->buf, data, len);
}

/* Sends a response and remembers it for retransmitted copies of the request. */
static void send_response(const coap_peer_t *to, uint16_t req_mid, coap_pdu_t *rsp, uint32_t now)
{
    int n = coap_serialize(rsp, g_txbuf, sizeof(g_txbuf));
    if (n < 0) {
        /* the handler built more than a datagram holds: say so instead of going silent */
        rsp->code = COAP_500_INTERNAL_ERROR;
        rsp->n_opts = 0;
        rsp->err = 0;
        rsp->payload_len = 0;
        coap_pdu_printf(rsp, "response too large");
        n = coap_serialize(rsp, g_txbuf, sizeof(g_txbuf));
        if (n < 0)
            return;
    }
    transmit(to, g_txbuf, (uint16_t)n);
    dedup_store(to, req_mid, g_txbuf, (uint16_t)n, now);
}

static exchange_t *exchange_alloc(void)
{
    for (int i = 0; i < MAX_EXCHANGES; i++)
        if (g_ex[i].state == EX_FREE)
            return &g_ex[i];
    return NULL;
}

static void observer_drop(int i)
{
    if (i >= 0 && i < COAP_MAX_OBSERVERS)
        g_obs[i].used = 0;
}

/* A confirmable notification of observer i still in flight is no longer its business. */
static void exchange_forget_observer(int i)
{
    for (int k = 0; k < MAX_EXCHANGES; k++)
        if (g_ex[k].state != EX_FREE && g_ex[k].observer == i)
            g_ex[k].state = EX_FREE;
}

/* Ends an exchange and reports its outcome; the slot is free before the callback
 * runs, so the callback may start a new request. */
static void exchange_finish(exchange_t *ex, int result, const coap_msg_t *rsp)
{
    coap_response_fn cb = ex->cb;
    void *arg = ex->arg;
    int observer = ex->observer;
    ex->state = EX_FREE;
    if (observer >= 0) {
        g_obs[observer].con_pending = 0;
        if (result != COAP_RESULT_OK)
            observer_drop(observer); /* RFC 7641: an unacknowledged notification ends the observation */
        return;
    }
    if (cb)
        cb(arg, result, rsp);
}

static void handle_ack_or_rst(const coap_peer_t *from, const coap_msg_t *m, uint32_t now)
{
    for (int i = 0; i < MAX_EXCHANGES; i++) {
        exchange_t *ex = &g_ex[i];
        if (ex->state != EX_WAIT_ACK || ex->mid != m->mid || !same_peer(&ex->peer, from))
            continue;
        if (m->type == COAP_RST) {
            exchange_finish(ex, COAP_RESULT_RESET, NULL);
        } else if (m->code == COAP_EMPTY) {
            if (ex->observer >= 0) {
                exchange_finish(ex, COAP_RESULT_OK, NULL);
            } else {
                /* the response will come separately */
                ex->state = EX_WAIT_RESPONSE;
                ex->next_ms = now + SEPARATE_RESPONSE_WAIT_MS;
            }
        } else if (COAP_CODE_CLASS(m->code) >= 2 && m->tkl == ex->tkl && memcmp(m->token, ex->token, ex->tkl) == 0) {
            exchange_finish(ex, COAP_RESULT_OK, m);
        }
        return;
    }
    if (m->type == COAP_RST) {
        /* a Reset to a non-confirmable notification cancels the observation */
        for (int i = 0; i < COAP_MAX_OBSERVERS; i++)
            if (g_obs[i].used && g_obs[i].last_mid == m->mid && same_peer(&g_obs[i].peer, from))
                observer_drop(i);
    }
}

static void handle_separate_response(const coap_peer_t *from, const coap_msg_t *m, uint32_t now)
{
    exchange_t *match = NULL;
    for (int i = 0; i < MAX_EXCHANGES && !match; i++) {
        exchange_t *ex = &g_ex[i];
        if (ex->state != EX_FREE && ex->observer < 0 && same_peer(&ex->peer, from) && ex->tkl == m->tkl &&
            memcmp(ex->token, m->token, m->tkl) == 0)
            match = ex;
    }
    if (m->type == COAP_CON) {
        uint8_t ack[4] = { (uint8_t)(0x40 | (match ? COAP_ACK : COAP_RST) << 4), 0, (uint8_t)(m->mid >> 8),
                           (uint8_t)m->mid };
        if (!match)
            g_stats.rst_sent++;
        transmit(from, ack, 4);
        dedup_store(from, m->mid, ack, 4, now);
    }
    if (match)
        exchange_finish(match, COAP_RESULT_OK, m);
}

static uint32_t uri_hash(const coap_msg_t *m)
{
    uint32_t h = 2166136261u; /* FNV-1a over the Uri-Path and Uri-Query options */
    for (int i = 0; i < m->n_opts; i++) {
        const coap_option_t *o = &m->opts[i];
        if (o->num != COAP_OPT_URI_PATH && o->num != COAP_OPT_URI_QUERY)
            continue;
        h = (h ^ o->num) * 16777619u;
        h = (h ^ o->len) * 16777619u;
        for (uint16_t k = 0; k < o->len; k++)
            h = (h ^ o->val[k]) * 16777619u;
    }
    return h;
}

/* Collects one Block1 block. Returns 1 when the body is complete (in g_b1.buf),
 * 0 when `rsp` already holds the answer (2.31 or an error). */
static int block1_collect(const coap_peer_t *from, const coap_msg_t *m, uint32_t value, coap_pdu_t *rsp, uint32_t now)
{
    uint32_t num;
    int more;
    uint8_t szx;
    if (coap_block_parse(value, &num, &more, &szx) < 0) {
        rsp->code = COAP_400_BAD_REQUEST;
        coap_pdu_printf(rsp, "Block1 size exponent 7 is reserved");
        return 0;
    }
    uint32_t size = 16u << szx;
    uint32_t offset = num * size;
    uint32_t hash = uri_hash(m);
    if (num == 0) {
        uint32_t announced;
        g_b1.active = 1;
        g_b1.peer = *from;
        g_b1.code = m->code;
        g_b1.uri_hash = hash;
        g_b1.received = 0;
        if (coap_get_uint(m, COAP_OPT_SIZE1, &announced) == 1 && announced > COAP_BLOCK1_MAX) {
            g_b1.active = 0;
            rsp->code = COAP_413_ENTITY_TOO_LARGE;
            coap_pdu_add_uint(rsp, COAP_OPT_SIZE1, COAP_BLOCK1_MAX);
            coap_pdu_printf(rsp, "body of %lu bytes exceeds the %u-byte limit", (unsigned long)announced,
                            (unsigned)COAP_BLOCK1_MAX);
            return 0;
        }
    } else if (!g_b1.active || !same_peer(&g_b1.peer, from) || g_b1.code != m->code || g_b1.uri_hash != hash ||
               offset != g_b1.received || num >= (1u << 20)) {
        rsp->code = COAP_408_ENTITY_INCOMPLETE;
        coap_pdu_printf(rsp, "Block1 block %lu out of sequence (expected offset %lu)", (unsigned long)num,
                        (unsigned long)(g_b1.active ? g_b1.received : 0));
        return 0;
    }
    if (more && m->payload_len != size) {
        g_b1.active = 0;
        rsp->code = COAP_400_BAD_REQUEST;
        coap_pdu_printf(rsp, "Block1 block %lu has %u bytes; a non-final block must have %lu", (unsigned long)num,
                        (unsigned)m->payload_len, (unsigned long)size);
        return 0;
    }
    if (m->payload_len > COAP_BLOCK1_MAX - g_b1.received) {
        g_b1.active = 0;
        rsp->code = COAP_413_ENTITY_TOO_LARGE;
        coap_pdu_add_uint(rsp, COAP_OPT_SIZE1, COAP_BLOCK1_MAX);
        coap_pdu_printf(rsp, "body exceeds the %u-byte limit", (unsigned)COAP_BLOCK1_MAX);
        return 0;
    }
    if (m->payload_len)
        memcpy(g_b1.buf + g_b1.received, m->payload, m->payload_len);
    g_b1.received += m->payload_len;
    g_b1.last_ms = now;
    if (more) {
        rsp->code = COAP_231_CONTINUE;
        coap_pdu_add_uint(rsp, COAP_OPT_BLOCK1, coap_block_value(num, 1, szx));
        return 0;
    }
    g_b1.active = 0; /* the buffer stays intact while the handler reads it */
    return 1;
}

/* Serves only the block of a large response the peer asked for (or the first). */
static void block2_slice(const coap_msg_t *req, coap_pdu_t *rsp)
{
    uint32_t value, num = 0;
    int more;
    uint8_t szx = COAP_BLOCK_SZX;
    int asked = coap_get_uint(req, COAP_OPT_BLOCK2, &value) == 1;
    if (asked) {
        uint8_t want;
        if (coap_block_parse(value, &num, &more, &want) < 0)
            return;
        if (want < szx)
            szx = want;
    }
    uint32_t size = 16u << szx;
    if (COAP_CODE_CLASS(rsp->code) != 2 || (rsp->payload_len <= size && num == 0))
        return;
    uint32_t total = rsp->payload_len;
    uint32_t offset = num * size;
    if (num >= (1u << 20) || offset >= total) {
        rsp->code = COAP_400_BAD_REQUEST;
        rsp->payload_len = 0;
        coap_pdu_printf(rsp, "Block2 block %lu is past the end (%lu bytes)", (unsigned long)num, (unsigned long)total);
        return;
    }
    uint32_t n = total - offset < size ? total - offset : size;
    memmove(rsp->payload, rsp->payload + offset, n);
    rsp->payload_len = (uint16_t)n;
    coap_pdu_add_uint(rsp, COAP_OPT_BLOCK2, coap_block_value(num, offset + n < total, szx));
    if (num == 0)
        coap_pdu_add_uint(rsp, COAP_OPT_SIZE2, total);
}

static void handle_request(const coap_peer_t *from, const coap_msg_t *m, uint32_t now)
{
    coap_pdu_t *rsp = &g_rsp;
    int con = m->type == COAP_CON;
    coap_pdu_init(rsp, con ? COAP_ACK : COAP_NON, COAP_500_INTERNAL_ERROR, con ? m->mid : next_mid(), m->token, m->tkl,
                  g_rsp_payload, sizeof(g_rsp_payload));

    uint16_t bad = coap_unknown_critical(m);
    uint32_t b1;
    int has_b1;
    if (bad) {
        rsp->code = COAP_402_BAD_OPTION;
        coap_pdu_printf(rsp, "unrecognized critical option %u", (unsigned)bad);
    } else if (m->code < COAP_GET || m->code > COAP_DELETE) {
        rsp->code = COAP_405_METHOD_NOT_ALLOWED;
        coap_pdu_printf(rsp, "method code 0.%02u is not supported", (unsigned)COAP_CODE_DETAIL(m->code));
    } else if ((has_b1 = coap_get_uint(m, COAP_OPT_BLOCK1, &b1)) == 1) {
        if (block1_collect(from, m, b1, rsp, now) && g_on_request) {
            g_on_request(from, m, g_b1.buf, g_b1.received, rsp, now);
            coap_pdu_remove_option(rsp, COAP_OPT_BLOCK1);
            coap_pdu_add_uint(rsp, COAP_OPT_BLOCK1, b1 & ~8u);
        }
    } else if (g_on_request) {
        g_on_request(from, m, m->payload, m->payload_len, rsp, now);
        block2_slice(m, rsp);
    }
    send_response(from, m->mid, rsp, now);
}

void coap_input(const coap_peer_t *from, const uint8_t *data, uint16_t len, uint32_t now_ms)
{
    coap_msg_t m;
    g_stats.rx++;
    int r = coap_parse(&m, data, len);
    if (r == COAP_PARSE_SHORT || r == COAP_PARSE_VERSION) {
        g_stats.malformed++;
        return; /* nothing trustworthy to answer to */
    }
    if (r != COAP_PARSE_OK) {
        g_stats.malformed++;
        /* RFC 7252 4.2/4.3: reject a malformed CON with Reset, silently drop the rest */
        if (m.type == COAP_CON)
            send_empty(from, COAP_RST, m.mid);
        return;
    }
    if (m.type == COAP_ACK || m.type == COAP_RST) {
        handle_ack_or_rst(from, &m, now_ms);
        return;
    }
    if (m.code == COAP_EMPTY) {
        if (m.type == COAP_CON)
            send_empty(from, COAP_RST, m.mid); /* CoAP ping */
        return;
    }
    dedup_t *d = dedup_find(from, m.mid, now_ms);
    if (d) {
        g_stats.duplicates++;
        if (d->len)
            transmit(from, d->buf, d->len);
        return;
    }
    uint8_t cls = COAP_CODE_CLASS(m.code);
    if (cls == 0) {
        handle_request(from, &m, now_ms);
    } else if (cls >= 2 && cls <= 5) {
        handle_separate_response(from, &m, now_ms);
    } else if (m.type == COAP_CON) {
        send_empty(from, COAP_RST, m.mid); /* reserved code class */
    }
}

void coap_poll(uint32_t now_ms)
{
    for (int i = 0; i < MAX_EXCHANGES; i++) {
        exchange_t *ex = &g_ex[i];
        if (ex->state == EX_FREE || !due(now_ms, ex->next_ms))
            continue;
        if (ex->state == EX_WAIT_RESPONSE) {
            g_stats.timeouts++;
            exchange_finish(ex, COAP_RESULT_TIMEOUT, NULL);
            continue;
        }
        if (ex->retransmits >= COAP_MAX_RETRANSMIT) {
            g_stats.timeouts++;
            exchange_finish(ex, COAP_RESULT_TIMEOUT, NULL);
            continue;
        }
        if (transmit(&ex->peer, ex->buf, ex->len) < 0 && ex->tx_failures < TX_RETRY_LIMIT) {
            ex->tx_failures++;
            ex->next_ms = now_ms + TX_RETRY_MS;
            continue;
        }
        ex->retransmits++;
        g_stats.retransmits++;
        ex->timeout_ms *= 2;
        ex->next_ms = now_ms + ex->timeout_ms;
    }
    if (g_b1.active && now_ms - g_b1.last_ms > BLOCK1_IDLE_MS)
        g_b1.active = 0;
}

void coap_request_init(coap_pdu_t *p, uint8_t code, int confirmable, uint8_t *payload_buf, uint16_t cap)
{
    uint8_t token[4];
    uint32_t r = coap_random();
    memcpy(token, &r, sizeof(token));
    coap_pdu_init(p, confirmable ? COAP_CON : COAP_NON, code, next_mid(), token, sizeof(token), payload_buf, cap);
}

static int start_exchange(const coap_peer_t *to, const coap_pdu_t *p, int observer, coap_response_fn cb, void *arg,
                          uint32_t now)
{
    exchange_t *ex = exchange_alloc();
    if (ex == NULL)
        return -1;
    int n = coap_serialize(p, ex->buf, sizeof(ex->buf));
    if (n < 0)
        return -1;
    ex->len = (uint16_t)n;
    ex->peer = *to;
    ex->mid = p->mid;
    ex->tkl = p->tkl;
    memcpy(ex->token, p->token, p->tkl);
    ex->observer = (int8_t)observer;
    ex->cb = cb;
    ex->arg = arg;
    ex->retransmits = 0;
    ex->tx_failures = 0;
    if (p->type == COAP_CON) {
        ex->state = EX_WAIT_ACK;
        ex->timeout_ms = COAP_ACK_TIMEOUT_MS + coap_random() % COAP_ACK_RANDOM_MS;
    } else {
        ex->state = EX_WAIT_RESPONSE;
        ex->timeout_ms = SEPARATE_RESPONSE_WAIT_MS;
    }
    ex->next_ms = now + ex->timeout_ms;
    if (transmit(to, ex->buf, ex->len) < 0 && p->type == COAP_CON) {
        ex->tx_failures++;
        ex->next_ms = now + TX_RETRY_MS; /* retry soon without using up a retransmission */
    }
    return 0;
}

int coap_send_request(const coap_peer_t *to, const coap_pdu_t *p, coap_response_fn cb, void *arg, uint32_t now_ms)
{
    return start_exchange(to, p, -1, cb, arg, now_ms);
}

void coap_cancel(void *arg, int notify)
{
    for (int i = 0; i < MAX_EXCHANGES; i++) {
        exchange_t *ex = &g_ex[i];
        if (ex->state == EX_FREE || ex->observer >= 0 || ex->arg != arg)
            continue;
        if (notify)
            exchange_finish(ex, COAP_RESULT_CANCELLED, NULL);
        else
            ex->state = EX_FREE;
    }
}

int coap_pending_requests(void)
{
    int n = 0;
    for (int i = 0; i < MAX_EXCHANGES; i++)
        if (g_ex[i].state != EX_FREE && g_ex[i].observer < 0)
            n++;
    return n;
}

/* ---------------------------------------------------------------- observe */

int32_t coap_observe_add(const coap_peer_t *peer, const coap_msg_t *req, const char *path, uint16_t format, uint32_t now_ms)
{
    coap_observer_t *slot = NULL;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = &g_obs[i];
        if (o->used && same_peer(&o->peer, peer) && o->tkl == req->tkl && memcmp(o->token, req->token, req->tkl) == 0) {
            slot = o;
            break;
        }
    }
    for (int i = 0; i < COAP_MAX_OBSERVERS && !slot; i++)
        if (!g_obs[i].used)
            slot = &g_obs[i];
    if (strlen(path) >= COAP_OBS_PATH_LEN)
        return -1;
    if (slot == NULL) {
        /* Full: an observer that left without cancelling (a restarted server, a
         * quiet value it never heard about) must not lock out the next one, so
         * the one heard from least recently gives way (RFC 7641 allows it). */
        slot = &g_obs[0];
        for (int i = 1; i < COAP_MAX_OBSERVERS; i++)
            if ((int32_t)(g_obs[i].last_ms - slot->last_ms) < 0)
                slot = &g_obs[i];
        if (slot->con_pending)
            exchange_forget_observer((int)(slot - g_obs));
        g_stats.observers_evicted++;
    }
    memset(slot, 0, sizeof(*slot));
    slot->used = 1;
    slot->peer = *peer;
    slot->tkl = req->tkl;
    memcpy(slot->token, req->token, req->tkl);
    slot->format = format;
    strcpy(slot->path, path);
    slot->last_ms = now_ms;
    slot->last_con_ms = now_ms;
    g_obs_clock = (g_obs_clock + 1) & 0xFFFFFFu;
    slot->seq = g_obs_clock;
    return (int32_t)slot->seq;
}

int coap_observe_remove(const coap_peer_t *peer, const uint8_t *token, uint8_t tkl)
{
    int removed = 0;
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = &g_obs[i];
        if (o->used && same_peer(&o->peer, peer) && o->tkl == tkl && memcmp(o->token, token, tkl) == 0) {
            o->used = 0;
            removed = 1;
        }
    }
    return removed;
}

void coap_observe_remove_path(const char *path)
{
    size_t n = strlen(path);
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = &g_obs[i];
        if (o->used && strncmp(o->path, path, n) == 0 && (o->path[n] == '\0' || o->path[n] == '/'))
            o->used = 0;
    }
}

coap_observer_t *coap_observer(int i)
{
    if (i < 0 || i >= COAP_MAX_OBSERVERS || !g_obs[i].used)
        return NULL;
    return &g_obs[i];
}

int coap_notify(coap_observer_t *o, coap_pdu_t *p, uint32_t now_ms)
{
    int index = (int)(o - g_obs);
    if (index < 0 || index >= COAP_MAX_OBSERVERS || !o->used)
        return -1;
    /* 24-bit Observe values taken from one clock, so every notification is newer than the last */
    g_obs_clock = (g_obs_clock + 1) & 0xFFFFFFu;
    o->seq = g_obs_clock;
    int final = COAP_CODE_CLASS(p->code) != 2; /* an error ends the observation (RFC 7641 3.2) */
    /* Every COAP_OBS_CON_EVERY-th notification, and any after COAP_OBS_CON_MS of NON ones, is
     * confirmable: an observer that went away stops acknowledging and is dropped. */
    int con = (o->since_con >= COAP_OBS_CON_EVERY - 1 || now_ms - o->last_con_ms >= COAP_OBS_CON_MS) &&
              !o->con_pending && !final;
    p->type = con ? COAP_CON : COAP_NON;
    p->mid = next_mid();
    p->tkl = o->tkl;
    memcpy(p->token, o->token, o->tkl);
    coap_pdu_remove_option(p, COAP_OPT_OBSERVE);
    if (!final)
        coap_pdu_add_uint(p, COAP_OPT_OBSERVE, o->seq);
    o->last_mid = p->mid;
    o->last_ms = now_ms;
    if (con && start_exchange(&o->peer, p, index, NULL, NULL, now_ms) == 0) {
        o->con_pending = 1;
        o->since_con = 0;
        o->last_con_ms = now_ms;
        return 0;
    }
    p->type = COAP_NON;
    if (final)
        o->used = 0;
    int n = coap_serialize(p, g_txbuf, sizeof(g_txbuf));
    if (n < 0)
        return -1;
    if (o->since_con < 255)
        o->since_con++;
    return transmit(&o->peer, g_txbuf, (uint16_t)n);
}
