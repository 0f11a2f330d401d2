/* random: getrandom (default, GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE), getentropy, reads of
 * /dev/urandom; only sizes and "not all zero / two reads differ" are printed. */
#include "corpus.h"
#include <sys/random.h>

static int nonzero(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned char a[64], b[300];
    corpus_enter(argc, argv);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    check(getrandom(a, 16, 0) == 16 && nonzero(a, 16), "getrandom: 16 bytes ok");
    check(getrandom(b, 16, GRND_NONBLOCK) == 16 && memcmp(a, b, 16), "getrandom GRND_NONBLOCK: 16 other bytes");
    check(getrandom(a, 8, GRND_RANDOM) == 8, "getrandom GRND_RANDOM: 8 bytes");
    check(getrandom(a, 64, GRND_INSECURE) == 64 && nonzero(a, 64), "getrandom GRND_INSECURE: 64 bytes");
    check(getrandom(a, 16, 0x40) < 0 && errno == EINVAL, "getrandom unknown flag: EINVAL");
    check(getentropy(b, 32) == 0 && nonzero(b, 32), "getentropy: 32 bytes ok");
    check(getentropy(b, 257) < 0 && errno == EIO, "getentropy 257: EIO");
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    check(fd >= 0, "open /dev/urandom");
    check(read(fd, a, 32) == 32 && read(fd, b, 32) == 32 && memcmp(a, b, 32), "/dev/urandom: two reads differ");
    close(fd);
    return corpus_verdict();
}
