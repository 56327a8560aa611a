#include "rt_shell.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime.h"

static const char *const state_names[] = {"none", "installed", "running", "stopped", "faulted"};

static int parse_instance(const char *text, int *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < 0 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

void rt_cmd_service_input(int argc, char **argv)
{
    int inst;
    if (argc != 4 || parse_instance(argv[1], &inst) != 0) {
        printf("service input: invalid instance '%s' (expected 0-65535)\n", argc > 1 ? argv[1] : "");
        return;
    }
    int rc = rt_input(inst, argv[2], argv[3]);
    if (rc == 0)
        printf("service input: %s=%s delivered to %d\n", argv[2], argv[3], inst);
    else
        printf("service input: %s=%s refused by %d: %s\n", argv[2], argv[3], inst, rt_strerror(rc));
}

void rt_cmd_service_list(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ids[RT_MAX_SERVICES];
    int shown = rt_list(ids, RT_MAX_SERVICES);
    for (int i = 0; i < shown; i++) {
        rt_stats_t st;
        rt_diag_t dg;
        if (rt_stats(ids[i], &st) != 0 || rt_diag(ids[i], &dg) != 0)
            continue;
        printf("%d %s v%d %s cpu %lu.%lu%% mem %lu B up %lu s%s%s\n", ids[i], st.name, st.version,
               st.state >= 0 && st.state <= 4 ? state_names[st.state] : "?",
               (unsigned long)(st.cpu_permille / 10u), (unsigned long)(st.cpu_permille % 10u),
               (unsigned long)st.mem_bytes, (unsigned long)st.uptime_s, st.error[0] ? " error: " : "", st.error);
        printf("  load %lu us; code %lu lot %lu data %lu bss %lu B; stack loop %lu/%lu call %lu/%lu B\n",
               (unsigned long)dg.load_us, (unsigned long)dg.code_bytes, (unsigned long)dg.lot_bytes,
               (unsigned long)dg.data_bytes, (unsigned long)dg.bss_bytes, (unsigned long)dg.loop_stack_peak,
               (unsigned long)dg.loop_stack_size, (unsigned long)dg.call_stack_peak,
               (unsigned long)dg.call_stack_size);
    }
    printf("runtime: %lu context switches, clock %lu us\n", (unsigned long)rt_switch_count(),
           (unsigned long)rt_micros());
    if (!shown)
        printf("no services installed\n");
}
