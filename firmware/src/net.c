/* ARP, IPv4, UDP and ICMP echo over eth0 (the board's Ethernet) or sl0 (SLIP); main loop only, so no locking. */
#include "net.h"

#include <stdio.h>
#include <string.h>

#include "board.h"
#include "slip.h"
#include "systick.h"

#define ETH_HDR_LEN        14u
#define IP_HDR_LEN         20u
#define UDP_HDR_LEN        8u
#define ETHERTYPE_IPV4     0x0800u
#define ETHERTYPE_ARP      0x0806u
#define IP_PROTO_ICMP      1u
#define IP_PROTO_UDP       17u
#define IP_TTL             64u
#define ARP_OP_REQUEST     1u
#define ARP_OP_REPLY       2u
#define ICMP_ECHO_REPLY    0u
#define ICMP_ECHO_REQUEST  8u
#define UDP_ECHO_PORT      7u   /* RFC 862 echo: lets a harness check the path end to end */

/* make NET=slip sets it: SLIP, not Ethernet, is up after boot */
#ifndef FW_NET_DEFAULT_SLIP
#define FW_NET_DEFAULT_SLIP 0
#endif

#define ARP_CACHE_SIZE     8
#define ARP_TTL_MS         600000u
#define ARP_PENDING_SLOTS  3
#define ARP_RETRY_MS       250u
#define ARP_MAX_TRIES      4u
#define UDP_BINDINGS       8
#define RX_BURST           16  /* frames per interface per poll: keeps the shell responsive */

static const uint8_t BROADCAST_MAC[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };

struct arp_entry {
    struct netif *nif;
    uint32_t ip;
    uint8_t mac[6];
    uint32_t stamp;
};

/* A frame waiting for its next hop's MAC address. */
struct arp_pending {
    struct netif *nif;
    uint32_t next_hop;
    uint32_t last_request;
    uint8_t tries;
    uint16_t len;
    uint8_t frame[NET_ETH_FRAME_MAX];
};

struct udp_binding {
    uint16_t port;
    udp_rx_fn fn;
};

static struct netif eth0 = { .name = "eth0" };
static struct netif sl0 = { .name = "sl0" };
static struct netif *netifs;
static struct arp_entry arp_cache[ARP_CACHE_SIZE];
static struct arp_pending arp_pending[ARP_PENDING_SLOTS];
static struct udp_binding udp_bindings[UDP_BINDINGS];
static uint16_t ip_ident;

static uint8_t rx_frame[NET_ETH_FRAME_MAX + 4] __attribute__((aligned(4)));
static uint8_t tx_frame[NET_ETH_FRAME_MAX + 4] __attribute__((aligned(4)));

/* ---- byte order and checksums ---- */

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t get32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t len)
{
    for (; len > 1u; p += 2, len -= 2u)
        sum += get16(p);
    if (len)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xFFFFu) + (sum >> 16);
    return (uint16_t)~sum;
}

static uint32_t udp_pseudo_sum(uint32_t src, uint32_t dst, uint16_t udp_len)
{
    return (src >> 16) + (src & 0xFFFFu) + (dst >> 16) + (dst & 0xFFFFu) + IP_PROTO_UDP + udp_len;
}

/* ---- addresses ---- */

int net_parse_ip(const char *s, uint32_t *ip)
{
    uint32_t value = 0;
    for (int part = 0; part < 4; part++) {
        uint32_t octet = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            octet = octet * 10u + (uint32_t)(*s++ - '0');
            if (++digits > 3)
                return -1;
        }
        if (digits == 0 || octet > 255u)
            return -1;
        value = (value << 8) | octet;
        if (part < 3 && *s++ != '.')
            return -1;
    }
    if (*s != '\0')
        return -1;
    *ip = value;
    return 0;
}

void net_format_ip(uint32_t ip, char *out)
{
    snprintf(out, 16, "%lu.%lu.%lu.%lu", (unsigned long)(ip >> 24), (unsigned long)((ip >> 16) & 0xFFu),
             (unsigned long)((ip >> 8) & 0xFFu), (unsigned long)(ip & 0xFFu));
}

static int is_broadcast_for(const struct netif *nif, uint32_t ip)
{
    return ip == 0xFFFFFFFFu || (nif->netmask && ip == (nif->ip | ~nif->netmask));
}

/* ---- interfaces ---- */

void net_add_netif(struct netif *nif)
{
    struct netif **tail = &netifs;
    while (*tail)
        tail = &(*tail)->next;
    nif->next = NULL;
    nif->up = 0;
    *tail = nif;
}

struct netif *net_netif_first(void)
{
    return netifs;
}

struct netif *net_netif_find(const char *name)
{
    for (struct netif *nif = netifs; nif; nif = nif->next)
        if (strcmp(nif->name, name) == 0)
            return nif;
    return NULL;
}

static void arp_forget(struct netif *nif)
{
    for (int i = 0; i < ARP_CACHE_SIZE; i++)
        if (arp_cache[i].nif == nif)
            arp_cache[i].nif = NULL;
    for (int i = 0; i < ARP_PENDING_SLOTS; i++)
        if (arp_pending[i].nif == nif)
            arp_pending[i].nif = NULL;
}

void net_set_ipv4(struct netif *nif, uint32_t ip, uint32_t netmask, uint32_t gateway)
{
    nif->ip = ip;
    nif->netmask = netmask;
    nif->gateway = gateway;
    arp_forget(nif); /* next hops may have moved to another subnet */
}

int net_select(struct netif *nif)
{
    int known = 0;
    for (struct netif *n = netifs; n; n = n->next)
        known |= n == nif;
    if (!known)
        return NET_EINVAL;
    for (struct netif *n = netifs; n; n = n->next) {
        if (n != nif && n->up) {
            n->up = 0;
            arp_forget(n); /* frames parked for it would never leave */
        }
    }
    if (!nif->up && nif == &sl0)
        slip_reset(); /* bytes that sat on the line while it was down are stale */
    nif->up = 1;
    return 0;
}

struct netif *net_selected(void)
{
    for (struct netif *nif = netifs; nif; nif = nif->next)
        if (nif->up)
            return nif;
    return NULL;
}

uint32_t net_local_ip(void)
{
    struct netif *nif = net_selected();
    return nif ? nif->ip : 0;
}

/* The up interface whose subnet holds dst; otherwise the selected one. */
static struct netif *route(uint32_t dst)
{
    for (struct netif *nif = netifs; nif; nif = nif->next)
        if (nif->up && nif->ip && nif->netmask && (dst & nif->netmask) == (nif->ip & nif->netmask))
            return nif;
    return net_selected();
}

/* ---- ARP ---- */

static struct arp_entry *arp_lookup(struct netif *nif, uint32_t ip)
{
    uint32_t now = fw_millis();
    for (int i = 0; i < ARP_CACHE_SIZE; i++) {
        struct arp_entry *e = &arp_cache[i];
        if (e->nif == nif && e->ip == ip) {
            if (now - e->stamp > ARP_TTL_MS) {
                e->nif = NULL;
                return NULL;
            }
            return e;
        }
    }
    return NULL;
}

static int link_send(struct netif *nif, uint8_t *frame, uint16_t len)
{
    if (nif->send(nif, frame, len) != 0) {
        nif->tx_errors++;
        return NET_EDRIVER;
    }
    nif->tx_frames++;
    return 0;
}

static void eth_header(struct netif *nif, uint8_t *frame, const uint8_t *dst_mac, uint16_t ethertype)
{
    memcpy(frame, dst_mac, 6);
    memcpy(frame + 6, nif->mac, 6);
    put16(frame + 12, ethertype);
}

static void arp_send(struct netif *nif, uint16_t op, const uint8_t *target_mac, uint32_t target_ip)
{
    uint8_t frame[ETH_HDR_LEN + 28];
    eth_header(nif, frame, op == ARP_OP_REQUEST ? BROADCAST_MAC : target_mac, ETHERTYPE_ARP);
    uint8_t *arp = frame + ETH_HDR_LEN;
    put16(arp, 1);              /* Ethernet */
    put16(arp + 2, ETHERTYPE_IPV4);
    arp[4] = 6;
    arp[5] = 4;
    put16(arp + 6, op);
    memcpy(arp + 8, nif->mac, 6);
    put32(arp + 14, nif->ip);
    if (op == ARP_OP_REQUEST)
        memset(arp + 18, 0, 6);
    else
        memcpy(arp + 18, target_mac, 6);
    put32(arp + 24, target_ip);
    link_send(nif, frame, sizeof frame);
}

static void arp_flush_pending(struct netif *nif, uint32_t ip, const uint8_t *mac)
{
    for (int i = 0; i < ARP_PENDING_SLOTS; i++) {
        struct arp_pending *p = &arp_pending[i];
        if (p->nif == nif && p->next_hop == ip) {
            memcpy(p->frame, mac, 6);
            link_send(nif, p->frame, p->len);
            p->nif = NULL;
        }
    }
}

static void arp_learn(struct netif *nif, uint32_t ip, const uint8_t *mac, int create)
{
    struct arp_entry *slot = NULL;
    for (int i = 0; i < ARP_CACHE_SIZE && !slot; i++)
        if (arp_cache[i].nif == nif && arp_cache[i].ip == ip)
            slot = &arp_cache[i];
    if (!slot && !create)
        return;
    if (!slot) {
        /* A free entry, else the oldest one. */
        uint32_t now = fw_millis(), oldest_age = 0;
        for (int i = 0; i < ARP_CACHE_SIZE; i++) {
            if (!arp_cache[i].nif) {
                slot = &arp_cache[i];
                break;
            }
            if (now - arp_cache[i].stamp >= oldest_age) {
                oldest_age = now - arp_cache[i].stamp;
                slot = &arp_cache[i];
            }
        }
    }
    slot->nif = nif;
    slot->ip = ip;
    memcpy(slot->mac, mac, 6);
    slot->stamp = fw_millis();
    arp_flush_pending(nif, ip, mac);
}

static void arp_input(struct netif *nif, const uint8_t *arp, uint32_t len)
{
    if (len < 28u || get16(arp) != 1u || get16(arp + 2) != ETHERTYPE_IPV4 || arp[4] != 6u || arp[5] != 4u)
        return;
    uint16_t op = get16(arp + 6);
    const uint8_t *sender_mac = arp + 8;
    uint32_t sender_ip = get32(arp + 14);
    uint32_t target_ip = get32(arp + 24);
    if (!nif->ip || sender_ip == 0u)
        return;
    int for_us = target_ip == nif->ip;
    arp_learn(nif, sender_ip, sender_mac, for_us);
    if (for_us && op == ARP_OP_REQUEST)
        arp_send(nif, ARP_OP_REPLY, sender_mac, sender_ip);
}

/* Parks a frame until next_hop answers; the caller's frame is copied. */
static int arp_defer(struct netif *nif, uint32_t next_hop, const uint8_t *frame, uint16_t len)
{
    int asked = 0;
    struct arp_pending *slot = NULL;
    for (int i = 0; i < ARP_PENDING_SLOTS; i++) {
        if (!arp_pending[i].nif && !slot)
            slot = &arp_pending[i];
        else if (arp_pending[i].nif == nif && arp_pending[i].next_hop == next_hop)
            asked = 1;
    }
    if (!slot)
        return NET_EBUSY;
    slot->nif = nif;
    slot->next_hop = next_hop;
    slot->len = len;
    memcpy(slot->frame, frame, len);
    slot->last_request = fw_millis();
    slot->tries = 1;
    if (!asked)
        arp_send(nif, ARP_OP_REQUEST, NULL, next_hop);
    return 0;
}

static void arp_timers(void)
{
    uint32_t now = fw_millis();
    for (int i = 0; i < ARP_PENDING_SLOTS; i++) {
        struct arp_pending *p = &arp_pending[i];
        if (!p->nif || now - p->last_request < ARP_RETRY_MS)
            continue;
        if (p->tries >= ARP_MAX_TRIES) {
            p->nif->tx_errors++;
            p->nif = NULL;
            continue;
        }
        p->tries++;
        p->last_request = now;
        arp_send(p->nif, ARP_OP_REQUEST, NULL, p->next_hop);
    }
}

/* ---- IPv4 output ---- */

/* frame holds room for the link header, then an IPv4 packet of ip_len bytes. */
static int link_output(struct netif *nif, uint32_t dst, uint8_t *frame, uint16_t ip_len)
{
    if (nif->link == NETIF_LINK_IP)
        return link_send(nif, frame + ETH_HDR_LEN, ip_len);

    uint16_t len = (uint16_t)(ETH_HDR_LEN + ip_len);
    if (is_broadcast_for(nif, dst)) {
        eth_header(nif, frame, BROADCAST_MAC, ETHERTYPE_IPV4);
        return link_send(nif, frame, len);
    }
    uint32_t next_hop = dst;
    if ((dst & nif->netmask) != (nif->ip & nif->netmask)) {
        if (!nif->gateway)
            return NET_ENOIF;
        next_hop = nif->gateway;
    }
    struct arp_entry *e = arp_lookup(nif, next_hop);
    eth_header(nif, frame, e ? e->mac : BROADCAST_MAC, ETHERTYPE_IPV4);
    if (!e)
        return arp_defer(nif, next_hop, frame, len);
    return link_send(nif, frame, len);
}

/* The payload is already at frame + ETH_HDR_LEN + IP_HDR_LEN. */
static int ip_output(struct netif *nif, uint32_t dst, uint8_t proto, uint8_t *frame, uint16_t payload_len)
{
    uint8_t *ip = frame + ETH_HDR_LEN;
    uint16_t total = (uint16_t)(IP_HDR_LEN + payload_len);
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, total);
    put16(ip + 4, ip_ident++);
    put16(ip + 6, 0x4000); /* don't fragment: we never fragment nor reassemble */
    ip[8] = IP_TTL;
    ip[9] = proto;
    put16(ip + 10, 0);
    put32(ip + 12, nif->ip);
    put32(ip + 16, dst);
    put16(ip + 10, csum_fold(csum_add(0, ip, IP_HDR_LEN)));
    return link_output(nif, dst, frame, total);
}

/* ---- UDP ---- */

int udp_bind(uint16_t local_port, udp_rx_fn fn)
{
    if (local_port == 0 || !fn)
        return NET_EINVAL;
    struct udp_binding *free_slot = NULL;
    for (int i = 0; i < UDP_BINDINGS; i++) {
        if (udp_bindings[i].port == local_port)
            return NET_EINUSE;
        if (!udp_bindings[i].port && !free_slot)
            free_slot = &udp_bindings[i];
    }
    if (!free_slot)
        return NET_ENOSPACE;
    free_slot->port = local_port;
    free_slot->fn = fn;
    return 0;
}

int udp_unbind(uint16_t local_port)
{
    for (int i = 0; i < UDP_BINDINGS; i++) {
        if (udp_bindings[i].port == local_port) {
            udp_bindings[i].port = 0;
            udp_bindings[i].fn = NULL;
            return 0;
        }
    }
    return NET_EINVAL;
}

int udp_send(uint32_t dst_ip, uint16_t dst_port, uint16_t src_port, const uint8_t *data, uint16_t len)
{
    if (len > NET_UDP_MAX_PAYLOAD)
        return NET_ETOOBIG;
    if (dst_port == 0 || src_port == 0 || dst_ip == 0 || (len && !data))
        return NET_EINVAL;
    struct netif *nif = route(dst_ip);
    if (!nif || !nif->ip)
        return NET_ENOIF;

    uint8_t *udp = tx_frame + ETH_HDR_LEN + IP_HDR_LEN;
    uint16_t udp_len = (uint16_t)(UDP_HDR_LEN + len);
    put16(udp, src_port);
    put16(udp + 2, dst_port);
    put16(udp + 4, udp_len);
    put16(udp + 6, 0);
    /* data may point into rx_frame (a reply built from a request): distinct buffers. */
    if (len)
        memmove(udp + UDP_HDR_LEN, data, len);
    uint16_t sum = csum_fold(csum_add(udp_pseudo_sum(nif->ip, dst_ip, udp_len), udp, udp_len));
    put16(udp + 6, sum ? sum : 0xFFFFu);
    return ip_output(nif, dst_ip, IP_PROTO_UDP, tx_frame, udp_len);
}

static void udp_input(struct netif *nif, uint32_t src, uint32_t dst, const uint8_t *udp, uint32_t len)
{
    if (len < UDP_HDR_LEN)
        return;
    uint16_t udp_len = get16(udp + 4);
    if (udp_len < UDP_HDR_LEN || udp_len > len)
        return;
    if (get16(udp + 6) != 0 && csum_fold(csum_add(udp_pseudo_sum(src, dst, udp_len), udp, udp_len)) != 0) {
        nif->rx_dropped++;
        return;
    }
    uint16_t dst_port = get16(udp + 2);
    for (int i = 0; i < UDP_BINDINGS; i++) {
        if (udp_bindings[i].port == dst_port) {
            udp_bindings[i].fn(src, get16(udp), dst_port, udp + UDP_HDR_LEN, (uint16_t)(udp_len - UDP_HDR_LEN));
            return;
        }
    }
    nif->rx_dropped++;
}

static void udp_echo(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *data, uint16_t len)
{
    udp_send(src_ip, src_port, dst_port, data, len);
}

/* ---- ICMP ---- */

static void icmp_input(struct netif *nif, uint32_t src, const uint8_t *icmp, uint32_t len)
{
    if (len < 8u || len > NET_MTU - IP_HDR_LEN || csum_fold(csum_add(0, icmp, len)) != 0)
        return;
    if (icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0)
        return;
    uint8_t *reply = tx_frame + ETH_HDR_LEN + IP_HDR_LEN;
    memcpy(reply, icmp, len);
    reply[0] = ICMP_ECHO_REPLY;
    put16(reply + 2, 0);
    put16(reply + 2, csum_fold(csum_add(0, reply, len)));
    ip_output(nif, src, IP_PROTO_ICMP, tx_frame, (uint16_t)len);
}

/* ---- input ---- */

static void ip_input(struct netif *nif, const uint8_t *ip, uint32_t len)
{
    if (len < IP_HDR_LEN || (ip[0] >> 4) != 4u) {
        nif->rx_dropped++; /* on SLIP, line noise ends up here */
        return;
    }
    uint32_t hdr_len = (ip[0] & 0x0Fu) * 4u;
    uint32_t total = get16(ip + 2);
    /* Ethernet pads short frames: trust the IP total length, not the frame. */
    if (hdr_len < IP_HDR_LEN || total < hdr_len || total > len || csum_fold(csum_add(0, ip, hdr_len)) != 0) {
        nif->rx_dropped++;
        return;
    }
    if (get16(ip + 6) & 0x3FFFu) { /* a fragment: not supported */
        nif->rx_dropped++;
        return;
    }
    uint32_t src = get32(ip + 12);
    uint32_t dst = get32(ip + 16);
    if (!nif->ip || (dst != nif->ip && !is_broadcast_for(nif, dst)))
        return;
    const uint8_t *payload = ip + hdr_len;
    uint32_t payload_len = total - hdr_len;
    if (ip[9] == IP_PROTO_UDP)
        udp_input(nif, src, dst, payload, payload_len);
    else if (ip[9] == IP_PROTO_ICMP && dst == nif->ip)
        icmp_input(nif, src, payload, payload_len);
}

static void link_input(struct netif *nif, const uint8_t *frame, uint32_t len)
{
    if (nif->link == NETIF_LINK_IP) {
        ip_input(nif, frame, len);
        return;
    }
    if (len < ETH_HDR_LEN)
        return;
    if (memcmp(frame, nif->mac, 6) != 0 && memcmp(frame, BROADCAST_MAC, 6) != 0)
        return;
    uint16_t ethertype = get16(frame + 12);
    if (ethertype == ETHERTYPE_ARP)
        arp_input(nif, frame + ETH_HDR_LEN, len - ETH_HDR_LEN);
    else if (ethertype == ETHERTYPE_IPV4)
        ip_input(nif, frame + ETH_HDR_LEN, len - ETH_HDR_LEN);
}

int net_service(void)
{
    int handled = 0;
    for (struct netif *nif = netifs; nif; nif = nif->next) {
        if (!nif->up)
            continue;
        for (int i = 0; i < RX_BURST; i++) {
            int len = nif->recv(nif, rx_frame, NET_ETH_FRAME_MAX);
            if (len <= 0)
                break;
            nif->rx_frames++;
            handled++;
            link_input(nif, rx_frame, (uint32_t)len);
        }
    }
    arp_timers();
    return handled;
}

void net_poll(void)
{
    (void)net_service();
}

int net_arp_entry(int i, uint32_t *ip, uint8_t mac[6], uint32_t *age_ms)
{
    int seen = 0;
    for (int k = 0; k < ARP_CACHE_SIZE; k++) {
        if (!arp_cache[k].nif)
            continue;
        if (seen++ == i) {
            *ip = arp_cache[k].ip;
            memcpy(mac, arp_cache[k].mac, 6);
            *age_ms = fw_millis() - arp_cache[k].stamp;
            return 0;
        }
    }
    return -1;
}

static void set_static_ipv4(struct netif *nif, const char *ip, const char *netmask, const char *gateway)
{
    uint32_t a, m, g;
    net_parse_ip(ip, &a);
    net_parse_ip(netmask, &m);
    net_parse_ip(gateway, &g);
    net_set_ipv4(nif, a, m, g);
}

void net_init(void)
{
    int rc = board_eth_init(&eth0);
    if (rc != 0) {
#ifdef BOARD_ETH_NAME
        printf("net: %s not found (error %d); eth0 is unavailable\n", BOARD_ETH_NAME, rc);
#else
        printf("net: this board has no Ethernet; eth0 is unavailable\n");
#endif
    } else {
        net_add_netif(&eth0);
        /* QEMU user networking (slirp) defaults; the shell can override them. */
        set_static_ipv4(&eth0, "10.0.2.15", "255.255.255.0", "10.0.2.2");
    }
    slip_init(&sl0);
    net_add_netif(&sl0);
    set_static_ipv4(&sl0, SLIP_DEFAULT_IP, SLIP_DEFAULT_NETMASK, SLIP_DEFAULT_PEER);

#if FW_NET_DEFAULT_SLIP
    net_select(&sl0);
#else
    net_select(rc == 0 ? &eth0 : &sl0);
#endif
    struct netif *nif = net_selected();
    char ip[16], gw[16];
    net_format_ip(nif->ip, ip);
    net_format_ip(nif->gateway, gw);
    printf("net: %s (%s) up, address %s gateway %s\n", nif->name, nif->driver_name, ip, gw);
    udp_bind(UDP_ECHO_PORT, udp_echo);
}
