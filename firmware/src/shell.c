/* Console shell: line editing for scripted use, a Zephyr-like command tree. */
#include "shell.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "lwm2m.h"
#include "net.h"
#include "sensors.h"
#include "slip.h"
#include "systick.h"
#include "uart.h"
#include "runtime/rt_shell.h"

#define LINE_MAX_LEN  255
#define ARGV_MAX      12
#define UDP_SHELL_PORT 49999u /* local port of "net udp send"; replies are printed */

struct shell_cmd {
    const char *name;
    const char *help;
    const struct shell_cmd *sub;          /* subcommands, ended by a NULL name */
    void (*run)(int argc, char **argv);   /* argv[0] is the command's own name */
    uint8_t min_args, max_args;           /* argc bounds, argv[0] included */
    const char *usage;                    /* the arguments, for "Usage:" lines */
};

enum input_state { INPUT_TEXT, INPUT_ESC, INPUT_CSI, INPUT_SS3 };

static char line[LINE_MAX_LEN + 1];
static size_t line_len;
static int prompt_visible;     /* prompt (plus any typed text) is on screen, no newline yet */
static enum input_state input_state;
static char previous_byte;
static int udp_shell_bound;

/* Output that arrives while the prompt waits for input (service lines, UDP
 * replies) goes on lines of its own; the prompt and typed text come back after. */
static void async_output_begin(void)
{
    if (prompt_visible)
        uart_puts("\r\n");
}

static void async_output_end(void)
{
    if (prompt_visible) {
        uart_puts(SHELL_PROMPT);
        uart_write(line, line_len);
    }
}

/* ---- commands ---- */

static void cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("%s v%s (SDK API %d)\n", FW_NAME, FW_VERSION, FW_SDK_API);
}

static void cmd_server_add(int argc, char **argv)
{
    (void)argc;
    int rc = lwm2m_server_add(argv[1], argv[2]);
    if (rc == -1)
        printf("server_add: invalid server URI '%s' (expected coap://HOST:PORT)\n", argv[1]);
    else if (rc == -2)
        printf("server_add: invalid endpoint name '%s' (1-%d printable characters, none of &?/)\n", argv[2], LWM2M_MAX_ENDPOINT);
    else if (rc < 0)
        printf("server_add: cannot add server '%s' (error %d)\n", argv[1], rc);
    else
        printf("LwM2M server %s added, endpoint %s\n", argv[1], argv[2]);
}

static int parse_float(const char *s, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static void print_known_sensors(void)
{
    printf("known sensors:");
    for (int i = 0; sensor_name(i); i++)
        printf(" %s", sensor_name(i));
    printf("\n");
}

static void cmd_sensor_set(int argc, char **argv)
{
    (void)argc;
    float v;
    if (parse_float(argv[2], &v) != 0) {
        printf("sensor set: invalid value '%s' (expected a number such as 21.5)\n", argv[2]);
        return;
    }
    if (sensor_set(argv[1], v) != 0) {
        printf("sensor set: unknown sensor '%s'; ", argv[1]);
        print_known_sensors();
        return;
    }
    printf("%s = %.3f\n", argv[1], (double)v);
}

static void cmd_sensor_get(int argc, char **argv)
{
    (void)argc;
    float v;
    if (sensor_get(argv[1], &v) != 0) {
        printf("sensor get: unknown sensor '%s'; ", argv[1]);
        print_known_sensors();
        return;
    }
    printf("%s = %.3f\n", argv[1], (double)v);
}

static void cmd_reboot(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("Rebooting...\n");
    lwm2m_deregister();
    board_reset();
}

static void cmd_uptime(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("Uptime: %lu ms\n", (unsigned long)fw_millis());
}

static void print_mac(const uint8_t *mac)
{
    printf("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static void print_iface(const struct netif *nif, int index)
{
    char ip[16], mask[16], gw[16];
    net_format_ip(nif->ip, ip);
    net_format_ip(nif->netmask, mask);
    net_format_ip(nif->gateway, gw);
    printf("\nInterface %s (%s) [%d]\n", nif->name, nif->driver_name ? nif->driver_name : "?", index);
    printf("===================================\n");
    printf("Status    : %s\n", nif->up ? "up" : "down");
    if (nif->link == NETIF_LINK_ETHERNET) {
        printf("Link addr : ");
        print_mac(nif->mac);
        printf("\n");
    }
    printf("MTU       : %u\n", (unsigned)NET_MTU);
    printf("IPv4 address : %s\n", ip);
    printf("IPv4 netmask : %s\n", mask);
    printf("IPv4 gateway : %s\n", gw);
    printf("Frames    : rx %lu, tx %lu, rx dropped %lu, tx errors %lu\n", (unsigned long)nif->rx_frames,
           (unsigned long)nif->tx_frames, (unsigned long)nif->rx_dropped, (unsigned long)nif->tx_errors);
    if (nif->link == NETIF_LINK_IP) {
        struct slip_stats st;
        slip_get_stats(&st);
        printf("SLIP      : frames in %lu, out %lu, bad escape %lu, oversize %lu, line pauses %lu\n",
               (unsigned long)st.frames_in, (unsigned long)st.frames_out, (unsigned long)st.bad_escape,
               (unsigned long)st.oversize, (unsigned long)st.line_pauses);
    }
}

/* "slip"/"sl0" or "eth"/"eth0". */
static void select_iface(const char *which)
{
    const char *name = strcmp(which, "slip") == 0 ? "sl0" : strcmp(which, "eth") == 0 ? "eth0" : which;
    if (strcmp(name, "sl0") != 0 && strcmp(name, "eth0") != 0) {
        printf("net iface: unknown interface '%s' (expected slip or eth)\n", which);
        return;
    }
    struct netif *nif = net_netif_find(name);
    if (!nif || net_select(nif) != 0) {
        printf("net iface: %s is not available on this board\n", name);
        return;
    }
    char a[16], m[16], g[16];
    net_format_ip(nif->ip, a);
    net_format_ip(nif->netmask, m);
    net_format_ip(nif->gateway, g);
    printf("%s (%s) is up: address %s netmask %s gateway %s\n", nif->name, nif->driver_name, a, m, g);
}

static void cmd_iface(int argc, char **argv)
{
    if (argc > 1) {
        select_iface(argv[1]);
        return;
    }
    if (!net_netif_first()) {
        printf("No network interface\n");
        return;
    }
    int index = 1;
    for (struct netif *nif = net_netif_first(); nif; nif = nif->next, index++)
        print_iface(nif, index);
}

/* "10.0.2.15/24" or "10.0.2.15/255.255.255.0" (no suffix means /24). */
static int parse_cidr(char *s, uint32_t *ip, uint32_t *mask)
{
    char *slash = strchr(s, '/');
    *mask = 0xFFFFFF00u;
    if (slash) {
        *slash = '\0';
        const char *m = slash + 1;
        if (strchr(m, '.')) {
            if (net_parse_ip(m, mask) != 0)
                return -1;
            uint32_t inverted = ~*mask;
            if (*mask == 0 || (inverted & (inverted + 1u)) != 0) /* not contiguous ones */
                return -1;
        } else {
            char *end;
            long bits = strtol(m, &end, 10);
            if (end == m || *end != '\0' || bits < 1 || bits > 32)
                return -1;
            *mask = bits == 32 ? 0xFFFFFFFFu : ~(0xFFFFFFFFu >> bits);
        }
    }
    return net_parse_ip(s, ip);
}

static void cmd_ipv4_set(int argc, char **argv)
{
    struct netif *nif = net_selected();
    if (!nif) {
        printf("net ipv4 set: no network interface\n");
        return;
    }
    uint32_t ip, mask, gw = 0;
    if (parse_cidr(argv[1], &ip, &mask) != 0 || ip == 0) {
        printf("net ipv4 set: invalid address '%s' (expected ADDR/PREFIX, e.g. 10.0.2.15/24)\n", argv[1]);
        return;
    }
    if (argc > 2 && net_parse_ip(argv[2], &gw) != 0) {
        printf("net ipv4 set: invalid gateway '%s' (expected a.b.c.d)\n", argv[2]);
        return;
    }
    if (gw && (gw & mask) != (ip & mask)) {
        printf("net ipv4 set: gateway %s is not in the interface's subnet\n", argv[2]);
        return;
    }
    net_set_ipv4(nif, ip, mask, gw);
    char a[16], m[16], g[16];
    net_format_ip(ip, a);
    net_format_ip(mask, m);
    net_format_ip(gw, g);
    printf("%s: address %s netmask %s gateway %s\n", nif->name, a, m, g);
}

static void cmd_arp(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uint32_t ip, age;
    uint8_t mac[6];
    int i = 0;
    for (; net_arp_entry(i, &ip, mac, &age) == 0; i++) {
        char a[16];
        net_format_ip(ip, a);
        printf("%d  %-15s  ", i, a);
        print_mac(mac);
        printf("  %lu ms\n", (unsigned long)age);
    }
    if (i == 0)
        printf("ARP cache is empty\n");
}

static void udp_shell_rx(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *data, uint16_t len)
{
    (void)dst_port;
    char a[16];
    net_format_ip(src_ip, a);
    async_output_begin();
    printf("net udp: received %u bytes from %s:%u: ", (unsigned)len, a, (unsigned)src_port);
    for (uint16_t i = 0; i < len; i++)
        putchar(data[i] >= 0x20 && data[i] < 0x7F ? data[i] : '.');
    printf("\n");
    async_output_end();
}

static void cmd_udp_send(int argc, char **argv)
{
    (void)argc;
    uint32_t ip;
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (net_parse_ip(argv[1], &ip) != 0) {
        printf("net udp send: invalid host '%s' (expected a.b.c.d)\n", argv[1]);
        return;
    }
    if (end == argv[2] || *end != '\0' || port < 1 || port > 65535) {
        printf("net udp send: invalid port '%s' (expected 1-65535)\n", argv[2]);
        return;
    }
    if (!udp_shell_bound) {
        if (udp_bind(UDP_SHELL_PORT, udp_shell_rx) != 0) {
            printf("net udp send: local port %u is busy\n", (unsigned)UDP_SHELL_PORT);
            return;
        }
        udp_shell_bound = 1;
    }
    size_t len = strlen(argv[3]);
    int rc = udp_send(ip, (uint16_t)port, UDP_SHELL_PORT, (const uint8_t *)argv[3], (uint16_t)len);
    if (rc != 0)
        printf("net udp send: failed (error %d)\n", rc);
    else
        printf("net udp: sent %u bytes to %s:%ld from port %u\n", (unsigned)len, argv[1], port,
               (unsigned)UDP_SHELL_PORT);
}

static void cmd_help(int argc, char **argv);

static const struct shell_cmd lwm2m_cmds[] = {
    { "server_add", "Add an LwM2M server and register to it", NULL, cmd_server_add, 3, 3,
      "<coap://HOST:PORT> <endpoint>" },
    { NULL },
};

static const struct shell_cmd connector_cmds[] = {
    { "lwm2m", "LwM2M connector", lwm2m_cmds, NULL, 0, 0, NULL },
    { NULL },
};

/* Implemented by the service runtime (runtime/rt_shell.c). */
static const struct shell_cmd service_cmds[] = {
    { "input", "Write a service input (calls its on_input)", NULL, rt_cmd_service_input, 4, 4,
      "<instance> <key> <value>" },
    { "list", "List installed services with their stats", NULL, rt_cmd_service_list, 1, 1, "" },
    { NULL },
};

static const struct shell_cmd embserve_cmds[] = {
    { "connector", "Connector configuration", connector_cmds, NULL, 0, 0, NULL },
    { "service", "Service runtime", service_cmds, NULL, 0, 0, NULL },
    { "version", "Print the firmware version", NULL, cmd_version, 1, 1, "" },
    { NULL },
};

static const struct shell_cmd sensor_cmds[] = {
    { "get", "Read a sensor", NULL, cmd_sensor_get, 2, 2, "<sensor>" },
    { "set", "Set a simulated sensor's value", NULL, cmd_sensor_set, 3, 3, "<sensor> <value>" },
    { NULL },
};

static const struct shell_cmd kernel_cmds[] = {
    { "reboot", "De-register and reset the node", NULL, cmd_reboot, 1, 2, "[cold|warm]" },
    { "uptime", "Milliseconds since boot", NULL, cmd_uptime, 1, 1, "" },
    { NULL },
};

static const struct shell_cmd ipv4_cmds[] = {
    { "set", "Set the address, netmask and gateway of the interface that is up", NULL, cmd_ipv4_set, 2, 3,
      "<addr>[/<prefix>|/<netmask>] [<gateway>]" },
    { NULL },
};

static const struct shell_cmd udp_cmds[] = {
    { "send", "Send a UDP datagram and print the replies", NULL, cmd_udp_send, 4, 4, "<host> <port> <payload>" },
    { NULL },
};

static const struct shell_cmd net_cmds[] = {
    { "arp", "Print the ARP cache", NULL, cmd_arp, 1, 1, "" },
    { "iface", "Print network interfaces, or bring one up (the others go down)", NULL, cmd_iface, 1, 2,
      "[slip|eth]" },
    { "ipv4", "IPv4 addressing", ipv4_cmds, NULL, 0, 0, NULL },
    { "udp", "Send UDP datagrams", udp_cmds, NULL, 0, 0, NULL },
    { NULL },
};

static const struct shell_cmd root_cmds[] = {
    { "embserve", "embServe commands", embserve_cmds, NULL, 0, 0, NULL },
    { "help", "Prints the help message.", NULL, cmd_help, 1, ARGV_MAX, "[<command> ...]" },
    { "kernel", "Kernel commands", kernel_cmds, NULL, 0, 0, NULL },
    { "net", "Networking commands", net_cmds, NULL, 0, 0, NULL },
    { "sensor", "Sensor commands", sensor_cmds, NULL, 0, 0, NULL },
    { NULL },
};

/* ---- dispatch ---- */

static const struct shell_cmd *find_cmd(const struct shell_cmd *table, const char *name)
{
    for (; table && table->name; table++)
        if (strcmp(table->name, name) == 0)
            return table;
    return NULL;
}

static void print_subcommands(const struct shell_cmd *table)
{
    size_t width = 0;
    for (const struct shell_cmd *c = table; c->name; c++)
        if (strlen(c->name) > width)
            width = strlen(c->name);
    for (const struct shell_cmd *c = table; c->name; c++)
        printf("  %-*s :%s\n", (int)width, c->name, c->help);
}

static void print_cmd_help(const char *path, const struct shell_cmd *cmd)
{
    printf("%s - %s\n", path, cmd->help);
    if (cmd->run)
        printf("Usage: %s %s\n", path, cmd->usage);
    if (cmd->sub) {
        printf("Subcommands:\n");
        print_subcommands(cmd->sub);
    }
}

static int is_help_flag(const char *s)
{
    return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0;
}

/* Walks argv down the command tree; *depth is how many words were consumed. */
static const struct shell_cmd *resolve(int argc, char **argv, int *depth, char *path, size_t path_size)
{
    const struct shell_cmd *cmd = find_cmd(root_cmds, argv[0]);
    if (!cmd)
        return NULL;
    snprintf(path, path_size, "%s", cmd->name);
    int d = 1;
    while (cmd->sub && d < argc) {
        const struct shell_cmd *next = find_cmd(cmd->sub, argv[d]);
        if (!next)
            break;
        cmd = next;
        size_t used = strlen(path);
        snprintf(path + used, path_size - used, " %s", cmd->name);
        d++;
    }
    *depth = d;
    return cmd;
}

static void cmd_help(int argc, char **argv)
{
    if (argc > 1) {
        char path[96];
        int depth;
        const struct shell_cmd *cmd = resolve(argc - 1, argv + 1, &depth, path, sizeof path);
        if (!cmd || depth != argc - 1) {
            printf("help: no command '%s'\n", argv[cmd ? depth + 1 : 1]);
            return;
        }
        print_cmd_help(path, cmd);
        return;
    }
    printf("Available commands:\n");
    print_subcommands(root_cmds);
}

static void dispatch(int argc, char **argv)
{
    char path[96];
    int depth;
    const struct shell_cmd *cmd = resolve(argc, argv, &depth, path, sizeof path);
    if (!cmd) {
        printf("%s: command not found\n", argv[0]);
        return;
    }
    if (depth < argc && is_help_flag(argv[depth])) {
        print_cmd_help(path, cmd);
        return;
    }
    if (!cmd->run) {
        if (depth < argc)
            printf("%s: unknown parameter: %s\n", path, argv[depth]);
        else
            printf("%s: subcommand required\n", path);
        printf("Subcommands:\n");
        print_subcommands(cmd->sub);
        return;
    }
    int nargs = argc - depth + 1;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        printf("%s: wrong parameter count\n", path);
        printf("Usage: %s %s\n", path, cmd->usage);
        return;
    }
    cmd->run(nargs, argv + depth - 1);
}

/* Splits in place on blanks; "double quotes" keep blanks inside one word. */
static int tokenize(char *s, char **argv)
{
    int argc = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (argc == ARGV_MAX)
            return -1;
        if (*s == '"') {
            argv[argc++] = ++s;
            while (*s && *s != '"')
                s++;
        } else {
            argv[argc++] = s;
            while (*s && *s != ' ' && *s != '\t')
                s++;
        }
        if (*s)
            *s++ = '\0';
    }
    return argc;
}

void shell_execute(char *text)
{
    char *argv[ARGV_MAX];
    int argc = tokenize(text, argv);
    if (argc < 0) {
        printf("too many arguments (at most %d words)\n", ARGV_MAX);
        return;
    }
    if (argc > 0)
        dispatch(argc, argv);
}

/* ---- line editing ---- */

static void show_prompt(void)
{
    uart_puts(SHELL_PROMPT);
    prompt_visible = 1;
}

static void end_of_line(void)
{
    uart_puts("\r\n");
    prompt_visible = 0;
    line[line_len] = '\0';
    shell_execute(line);
    line_len = 0;
    show_prompt();
}

static void erase_line(void)
{
    for (; line_len > 0; line_len--)
        uart_puts("\b \b");
}

static void handle_byte(char c)
{
    char previous = previous_byte;
    previous_byte = c;

    /* Escape sequences (arrow keys and the like) are swallowed whole; a control
     * byte inside one ends it and counts on its own, so CR and Ctrl-C always work. */
    if (input_state != INPUT_TEXT && (unsigned char)c < 0x20)
        input_state = INPUT_TEXT;
    if (input_state == INPUT_ESC) {
        input_state = c == '[' ? INPUT_CSI : c == 'O' ? INPUT_SS3 : INPUT_TEXT;
        return;
    }
    if (input_state == INPUT_CSI) {
        if (c >= 0x40 && c <= 0x7E)
            input_state = INPUT_TEXT;
        return;
    }
    if (input_state == INPUT_SS3) {
        input_state = INPUT_TEXT;
        return;
    }

    switch (c) {
    case '\r':
    case '\n':
        /* CR LF and LF CR count as one line end; lone CR or LF also end a line. */
        if ((c == '\n' && previous == '\r') || (c == '\r' && previous == '\n')) {
            previous_byte = 0;
            return;
        }
        end_of_line();
        return;
    case '\b':
    case 0x7F:
        if (line_len > 0) {
            line_len--;
            uart_puts("\b \b");
        }
        return;
    case 0x03: /* Ctrl-C: drop the line */
        uart_puts("^C\r\n");
        line_len = 0;
        show_prompt();
        return;
    case 0x15: /* Ctrl-U: erase the line */
        erase_line();
        return;
    case 0x1B:
        input_state = INPUT_ESC;
        return;
    default:
        break;
    }
    if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7F)
        return; /* other control bytes and non-ASCII are ignored */
    if (line_len >= LINE_MAX_LEN)
        return; /* full: further characters are dropped, not echoed */
    line[line_len++] = c;
    uart_putc(c);
}

int shell_poll(void)
{
    int handled = 0;
    int c;
    while ((c = uart_getc()) >= 0) {
        handle_byte((char)c);
        handled++;
    }
    return handled;
}

void shell_init(void)
{
    line_len = 0;
    input_state = INPUT_TEXT;
    show_prompt();
}

void fw_console_line(const char *service_name, const char *text)
{
    async_output_begin();
    printf("[%s] %s\n", service_name, text);
    async_output_end();
}
