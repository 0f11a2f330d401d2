/*
 * agent_liar: a follower whose program lies to its monitor through the in-process agent's status
 * page (mvx/mechanics/native/mvx_agent.h), as a compromised follower could.
 *
 *   agent_liar
 *
 * Where the agent's ring is there and published (a follower's, under MVX_AGENT=1), it maps the
 * status page at fd 1023 and claims to have answered 999 reads; then, in every variant, it writes
 * one line to stdout and exits 0. The follower's monitor must stop the run at that write (a claim
 * beyond what it published), not follow records nobody read. A leader, or a run without the
 * agent, just writes the line.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    const uint32_t *ring = mmap(NULL, 4096, PROT_READ, MAP_SHARED, 1022, 0);
    if (ring != MAP_FAILED && ring[0] == 0x4158564du) { /* MVX_AGENT_MAGIC: a follower's ring */
        uint32_t *status = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 1023, 0);
        if (status != MAP_FAILED)
            status[1] = 999; /* consumed */
    }
    static const char line[] = "agent_liar: done\n";
    return write(1, line, sizeof line - 1) == (ssize_t)(sizeof line - 1) ? 0 : 1;
}
