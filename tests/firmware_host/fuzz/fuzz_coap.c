/* libFuzzer target: one datagram into the firmware's CoAP endpoint (firmware/src/coap.c).
 *
 * The endpoint is the one the board runs, with a transport that keeps what it
 * would send and a request handler that answers like a device (content,
 * Location-Path, a large body for Block2). Each input is parsed, then fed to
 * the endpoint at an advancing time, and retransmissions are polled. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "coap.h"

static uint32_t g_now;
static uint8_t g_body[COAP_MAX_PAYLOAD];

static int sink(const coap_peer_t *to, const uint8_t *data, uint16_t len)
{
    coap_msg_t m;
    (void)to;
    (void)coap_parse(&m, data, len); /* what the endpoint sends must itself parse */
    return 0;
}

static void handler(const coap_peer_t *from, const coap_msg_t *req, const uint8_t *body, uint32_t body_len,
                    coap_pdu_t *rsp, uint32_t now_ms)
{
    (void)from;
    (void)now_ms;
    uint32_t observe;
    rsp->code = COAP_205_CONTENT;
    if (coap_get_uint(req, COAP_OPT_OBSERVE, &observe) == 1 && observe == 0)
        coap_observe_add(from, req, "/3303/0/5700", COAP_CF_TEXT, now_ms);
    if (req->code == COAP_POST) {
        rsp->code = COAP_201_CREATED;
        coap_pdu_add_str(rsp, COAP_OPT_LOCATION_PATH, "9");
    }
    /* echo the body (a Block1 upload), or a large answer to slice with Block2 */
    if (body_len)
        coap_pdu_set_payload(rsp, body, (uint16_t)(body_len > rsp->payload_cap ? rsp->payload_cap : body_len));
    else
        coap_pdu_set_payload(rsp, g_body, (uint16_t)(req->n_opts * 100u % sizeof(g_body)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        coap_init(sink, handler, 1);
        memset(g_body, 'x', sizeof(g_body));
        ready = 1;
    }
    coap_msg_t m;
    (void)coap_parse(&m, data, size);
    if (size > COAP_MAX_DATAGRAM)
        return 0;
    const coap_peer_t peer = { 0x0A000202u, (uint16_t)(5683 + (size & 3)) };
    g_now += 37;
    coap_input(&peer, data, (uint16_t)size, g_now);
    coap_poll(g_now + 5000);
    for (int i = 0; i < COAP_MAX_OBSERVERS; i++) {
        coap_observer_t *o = coap_observer(i);
        if (o) {
            coap_pdu_t p;
            coap_pdu_init(&p, COAP_NON, COAP_205_CONTENT, 0, NULL, 0, NULL, 0);
            coap_notify(o, &p, g_now);
        }
    }
    return 0;
}
