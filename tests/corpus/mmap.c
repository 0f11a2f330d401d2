/* mmap: anonymous and file-backed mappings (MAP_SHARED written back with msync, MAP_PRIVATE copy
 * on write), mprotect, mremap (grow, move), madvise, mincore, munmap. Addresses are never printed. */
#include "corpus.h"
#include <sys/mman.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    long pg = sysconf(_SC_PAGESIZE);
    char buf[32];
    corpus_enter(argc, argv);

    char *a = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(a != MAP_FAILED, "mmap anonymous 3 pages");
    check(a[0] == 0 && a[3 * pg - 1] == 0, "anonymous memory is zero");
    memset(a, 'a', 3 * pg);
    check(mprotect(a + pg, pg, PROT_READ) == 0, "mprotect middle page read-only");
    check(mprotect(a + pg, pg, PROT_READ | PROT_WRITE) == 0, "mprotect back to read-write");
    unsigned char vec[6];
    check(mincore(a, 3 * pg, vec) == 0 && (vec[0] & 1) && (vec[2] & 1), "mincore: pages resident");
    char *b = mremap(a, 3 * pg, 6 * pg, MREMAP_MAYMOVE);
    check(b != MAP_FAILED, "mremap grow to 6 pages");
    check(b[0] == 'a' && b[3 * pg - 1] == 'a' && b[3 * pg] == 0, "mremap kept the contents");
    check(madvise(b, pg, MADV_DONTNEED) == 0 && b[0] == 0 && b[pg] == 'a', "madvise DONTNEED zeroes a page");
    char *c = mremap(b, 6 * pg, 2 * pg, 0);
    check(c == b, "mremap shrink in place");
    check(munmap(c, 2 * pg) == 0, "munmap");

    int fd = open("map.tmp", O_CREAT | O_EXCL | O_RDWR, 0600);
    check(fd >= 0, "open map.tmp");
    check(ftruncate(fd, 2 * pg) == 0, "ftruncate 2 pages");
    char *s = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(s != MAP_FAILED, "mmap file MAP_SHARED");
    memcpy(s + pg, "shared-bytes", 12);
    check(msync(s, 2 * pg, MS_SYNC) == 0, "msync MS_SYNC");
    check(pread(fd, buf, 12, pg) == 12 && !memcmp(buf, "shared-bytes", 12), "file sees the shared write");
    check(pwrite(fd, "from-write", 10, 0) == 10 && !memcmp(s, "from-write", 10), "mapping sees a pwrite");
    char *p = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, pg);
    check(p != MAP_FAILED && !memcmp(p, "shared-bytes", 12), "mmap file MAP_PRIVATE at offset 1 page");
    memcpy(p, "private", 7);
    check(pread(fd, buf, 12, pg) == 12 && !memcmp(buf, "shared-bytes", 12), "private write not in the file");
    check(msync(s, pg, MS_ASYNC) == 0 && msync(s, pg, MS_INVALIDATE) == 0, "msync MS_ASYNC, MS_INVALIDATE");
    char *r = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
    check(r != MAP_FAILED && !memcmp(r, "from-write", 10), "mmap read-only view");
    check(mprotect(r, pg, PROT_READ | PROT_WRITE) == 0, "mprotect read-only shared map writable (fd is O_RDWR)");
    check(munmap(p, pg) == 0 && munmap(s, 2 * pg) == 0 && munmap(r, pg) == 0, "munmap file maps");
    close(fd);
    int ro = open("map.tmp", O_RDONLY);
    char *q = mmap(NULL, pg, PROT_READ, MAP_SHARED, ro, 0);
    check(q != MAP_FAILED && mprotect(q, pg, PROT_READ | PROT_WRITE) < 0 && errno == EACCES,
          "mprotect writable on an O_RDONLY shared map: EACCES");
    munmap(q, pg);
    close(ro);
    check(mmap(NULL, pg, PROT_READ, MAP_SHARED, 12345, 0) == MAP_FAILED && errno == EBADF, "mmap bad fd: EBADF");
    check(unlink("map.tmp") == 0, "unlink map.tmp");
    return corpus_verdict();
}
