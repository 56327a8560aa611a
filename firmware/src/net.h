/* A small IPv4 stack: ARP, IPv4, UDP and ICMP echo over pluggable interfaces. */
#ifndef NET_H
#define NET_H

#include <stdint.h>

/* ---- shared interface (fixed in the firmware plan) ---- */
typedef void (*udp_rx_fn)(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *data, uint16_t len);
int  udp_bind(uint16_t local_port, udp_rx_fn fn);       /* 0 ok */
int  udp_send(uint32_t dst_ip, uint16_t dst_port, uint16_t src_port, const uint8_t *data, uint16_t len); /* 0 ok, <0 error; IPs host byte order */
uint32_t net_local_ip(void);                              /* host byte order; the selected interface's */
void net_poll(void);                                      /* called from the main loop */
int  net_parse_ip(const char *s, uint32_t *ip);           /* 0 ok, -1 not a dotted quad */

/* ---- errors returned by udp_send/udp_bind ---- */
#define NET_ENOIF     (-1)  /* no interface up, or it has no address */
#define NET_ETOOBIG   (-2)  /* payload larger than NET_UDP_MAX_PAYLOAD */
#define NET_EBUSY     (-3)  /* waiting for ARP and the pending queue is full */
#define NET_EDRIVER   (-4)  /* the link driver refused the frame */
#define NET_EINVAL    (-5)  /* bad argument (port 0, broadcast source, ...) */
#define NET_EINUSE    (-6)  /* udp_bind: port already bound */
#define NET_ENOSPACE  (-7)  /* udp_bind: binding table full */

#define NET_MTU              1500u
#define NET_UDP_MAX_PAYLOAD  (NET_MTU - 20u - 8u)
#define NET_ETH_FRAME_MAX    1514u

/* ---- interfaces ---- */
enum netif_link {
    NETIF_LINK_ETHERNET, /* frames carry an Ethernet header; ARP resolves next hops */
    NETIF_LINK_IP,       /* frames are bare IPv4 packets (point-to-point, e.g. SLIP) */
};

struct netif {
    const char *name;          /* "eth0" */
    const char *driver_name;   /* "LAN9118" */
    enum netif_link link;
    uint8_t up;                /* carries traffic; see net_select() */
    uint8_t mac[6];
    uint32_t ip, netmask, gateway; /* host byte order */
    /* Transmit one link frame; 0 ok, <0 error. */
    int (*send)(struct netif *nif, const uint8_t *frame, uint16_t len);
    /* Copy one received link frame into buf; its length, or 0 when none is waiting. */
    int (*recv)(struct netif *nif, uint8_t *buf, uint16_t cap);
    void *driver;
    uint32_t rx_frames, tx_frames, rx_dropped, tx_errors;
    struct netif *next;
};

/* Registers eth0 (LAN9118, 10.0.2.15/24 gw 10.0.2.2, matching QEMU user
 * networking) and sl0 (SLIP on UART1, 192.0.2.2/24 gw 192.0.2.1), then
 * selects the build's default: FW_NET_DEFAULT_SLIP (make NET=slip) picks sl0,
 * otherwise eth0 when the LAN9118 answers. */
void net_init(void);
void net_add_netif(struct netif *nif);    /* registered down; net_select() brings it up */
struct netif *net_netif_first(void);     /* every registered interface: iterate with ->next */
struct netif *net_netif_find(const char *name);
/* Makes nif the one interface that is up (all traffic goes through it) and
 * forgets what the others had pending. 0 ok, NET_EINVAL when not registered. */
int  net_select(struct netif *nif);
struct netif *net_selected(void);        /* the interface that is up, or NULL */
void net_set_ipv4(struct netif *nif, uint32_t ip, uint32_t netmask, uint32_t gateway);
/* Like net_poll(), but says how many frames it handled (0 = idle). */
int  net_service(void);
int  udp_unbind(uint16_t local_port);
/* "a.b.c.d" into out (at least 16 bytes). */
void net_format_ip(uint32_t ip, char *out);

/* ARP cache listing for the shell: fills ip/mac of entry i, 0 ok, -1 past the end. */
int  net_arp_entry(int i, uint32_t *ip, uint8_t mac[6], uint32_t *age_ms);

#endif
