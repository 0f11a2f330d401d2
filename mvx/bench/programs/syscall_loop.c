/* A variant for interception benchmarks: calls getppid() N times (argv[1]) and exits. */
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    return 0;
}
