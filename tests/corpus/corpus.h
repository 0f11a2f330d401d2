/*
 * corpus.h: the few helpers every tests/corpus program shares (libc only).
 *
 * A corpus program exercises one syscall family, prints one deterministic line per check
 * ("<what>: ok" or "<what>: FAIL (<errno name>)"; never a pid, time, address or random byte),
 * then "verdict: pass" and exits 0, or "verdict: fail <first failed check>" and exits 1.
 * It works in argv[1] if given, else in the cwd, and removes what it created.
 */
#ifndef CORPUS_H
#define CORPUS_H
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char corpus_why[160];

/* One check: print it, remember the first failure. errno is printed by name when it fails. */
static int check(int ok, const char *what)
{
    int e = errno;
    if (ok) {
        printf("%s: ok\n", what);
    } else {
        const char *name = e ? strerrorname_np(e) : NULL;
        printf("%s: FAIL (%s)\n", what, name ? name : "no errno");
        if (!corpus_why[0])
            snprintf(corpus_why, sizeof corpus_why, "%s", what);
    }
    errno = 0;
    return ok;
}

/* A deterministic fact that is not a check ("signals handled: 3"). */
#define note(...) (printf(__VA_ARGS__), putchar('\n'))

static void corpus_enter(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0) {
        printf("chdir %s: FAIL\nverdict: fail chdir\n", argv[1]);
        exit(1);
    }
    errno = 0;
}

static int corpus_verdict(void)
{
    if (corpus_why[0]) {
        printf("verdict: fail %s\n", corpus_why);
        return 1;
    }
    printf("verdict: pass\n");
    return 0;
}

#endif
