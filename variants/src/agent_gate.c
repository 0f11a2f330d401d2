/*
 * agent_gate: a program whose preads the leader's in-process agent makes through its gate
 * (mvx/mechanics/native/mvx_agent.h), and two ways a compromised leader could abuse the gate.
 *
 *   agent_gate          pread64 the first 64 bytes of /etc/passwd 100 times, print how many
 *                       succeeded, exit 0
 *   agent_gate abuse    the same, after a write(1, ...) made through the gate's syscall
 *                       instruction: the gate lets only pread64 run untrapped, so the write is
 *                       trapped and checked like any other (here: one the follower does not make)
 *   agent_gate lie      the same, after claiming in the agent's status page a pread64 of fd 1
 *                       (not a file of the variant's own world): the leader's monitor stops the run
 *
 * Where there is no gate (a follower, --no-agent, ptrace mode, aarch64) abuse and lie do nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The gate page: a read-only, executable shared mapping of the agent's ring memfd, mapped in this
 * process (a follower reads the leader's /proc/self/maps: mvx replicates it, so its lines name the
 * leader's mappings; msync says ENOMEM for a page not mapped here). */
static unsigned long find_gate(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long lo = 0, found = 0;
    char perms[8];
    while (maps && fgets(line, sizeof line, maps))
        if (sscanf(line, "%lx-%*x %7s", &lo, perms) == 2 && !strcmp(perms, "r-xs") && strstr(line, "mvx-agent-ring"))
            found = lo;
    if (maps)
        fclose(maps);
    return found && msync((void *)found, 4096, MS_ASYNC) == 0 ? found : 0;
}

static long write_through(unsigned long gate, const char *s, unsigned long n)
{
    long ret = -1;
#if defined(__x86_64__)
    __asm__ volatile("sub $128, %%rsp\n\tcall *%[g]\n\tadd $128, %%rsp"
                     : "=a"(ret)
                     : "0"(1L), "D"(1L), "S"(s), "d"(n), [g] "r"(gate + 0)
                     : "rcx", "r11", "memory", "cc");
#elif defined(__i386__)
    volatile unsigned long g = gate + 16;
    __asm__ volatile("call *%[g]" : "=a"(ret) : "0"(4L), "b"(1L), "c"(s), "d"(n), [g] "m"(g) : "memory", "cc");
#else
    (void)gate, (void)s, (void)n;
#endif
    return ret;
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "";
    unsigned long gate = find_gate();
    if (gate && !strcmp(how, "abuse")) {
        static const char msg[] = "agent_gate: written through the gate\n";
        write_through(gate, msg, sizeof msg - 1);
    }
    uint32_t **status = dlsym(RTLD_DEFAULT, "mvx_agent_status");
    if (gate && !strcmp(how, "lie") && status && *status) {
        int32_t *claim = (int32_t *)(*status + 4); /* claim[0]: fd, ret, count, offset */
        claim[0] = 1;
        claim[1] = 64;
        claim[2] = 64;
        claim[3] = 0;
        claim[4] = claim[5] = 0;
        (*status)[3] = 1; /* claimed */
    }
    int fd = open("/etc/passwd", O_RDONLY);
    char buf[64];
    int ok = 0;
    for (int i = 0; i < 100; i++)
        ok += pread(fd, buf, sizeof buf, 0) > 0;
    printf("agent_gate: %d preads\n", ok);
    return 0;
}
