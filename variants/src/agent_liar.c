/*
 * agent_liar: a follower whose program lies to its monitor through the in-process agent's status
 * page (mvx/mechanics/native/mvx_agent.h), as a compromised follower could.
 *
 *   agent_liar
 *
 * Where the agent is loaded and on (a follower's), it finds the agent's status page (the agent's
 * exported pointer: any code in the program could find the mapping) and claims to have answered
 * 999 reads; then, in every variant, it writes one line to stdout and exits 0. The follower's
 * monitor must stop the run at that write (a claim beyond what it published), not follow records
 * nobody read. A leader, or a run without the agent, just writes the line.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <unistd.h>

int main(void)
{
    uint32_t **status = dlsym(RTLD_DEFAULT, "mvx_agent_status");
    if (status && *status)
        (*status)[1] = 999; /* consumed */
    static const char line[] = "agent_liar: done\n";
    return write(1, line, sizeof line - 1) == (ssize_t)(sizeof line - 1) ? 0 : 1;
}
