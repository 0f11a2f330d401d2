/*
 * spawn: makes a new task, for the test that mvx stops a run before a task it does not follow is
 * made (tests/test_run.py).
 *
 *   spawn fork|vfork|thread MARKER
 *
 * Writes "spawning\n" to stdout, then makes a child process (fork, or vfork + _exit) or a thread
 * (pthread_create: clone3 or clone) whose only act is to create the file MARKER; waits for it and
 * writes "spawned\n". Under mvx the run stops at the call that makes the task: MARKER never appears.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *marker;

static void touch(void)
{
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

static void *thread_main(void *arg)
{
    (void)arg;
    touch();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        write(2, "usage: spawn fork|vfork|thread MARKER\n", 38);
        return 2;
    }
    marker = argv[2];
    write(1, "spawning\n", 9);
    if (strcmp(argv[1], "thread") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0)
            return 1;
        pthread_join(t, NULL);
    } else {
        pid_t pid = strcmp(argv[1], "vfork") == 0 ? vfork() : fork();
        if (pid == 0) {
            touch();
            _exit(0);
        }
        if (pid < 0)
            return 1;
        waitpid(pid, NULL, 0);
    }
    write(1, "spawned\n", 8);
    return 0;
}
