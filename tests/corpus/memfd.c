/* memfd: memfd_create with sealing, write/read/lseek, ftruncate, fstat, F_ADD_SEALS/F_GET_SEALS
 * and what seals forbid, mmap of a memfd, its /proc/self/fd name. */
#include "corpus.h"
#include <sys/mman.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    char buf[64];
    struct stat st;
    corpus_enter(argc, argv);
    int fd = memfd_create("corpus", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    check(fd >= 0, "memfd_create");
    check(fcntl(fd, F_GETFD) & FD_CLOEXEC, "close-on-exec");
    check(write(fd, "memory file", 11) == 11, "write 11 bytes");
    check(lseek(fd, 0, SEEK_SET) == 0 && read(fd, buf, 64) == 11 && !memcmp(buf, "memory file", 11), "read back");
    check(ftruncate(fd, 4096) == 0 && fstat(fd, &st) == 0 && st.st_size == 4096 && S_ISREG(st.st_mode),
          "ftruncate 4096, fstat");
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    check(!strcmp(link, "/memfd:corpus (deleted)"), "/proc/self/fd name: /memfd:corpus (deleted)");
    char *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    check(m != MAP_FAILED && !memcmp(m, "memory file", 11) && m[4095] == 0, "mmap sees the bytes");
    check(munmap(m, 4096) == 0, "munmap");
    check(fcntl(fd, F_GET_SEALS) == 0, "no seals yet");
    check(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) == 0, "F_ADD_SEALS shrink grow write");
    check(fcntl(fd, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), "F_GET_SEALS");
    check(pwrite(fd, "x", 1, 0) < 0 && errno == EPERM, "write when sealed: EPERM");
    check(ftruncate(fd, 100) < 0 && errno == EPERM, "shrink when sealed: EPERM");
    check(mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED && errno == EPERM, "writable map: EPERM");
    check(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL) == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) < 0 && errno == EPERM,
          "F_SEAL_SEAL");
    check(pread(fd, buf, 6, 0) == 6 && !memcmp(buf, "memory", 6), "pread still works");
    int plain = memfd_create("plain", 0);
    check(plain >= 0 && fcntl(plain, F_GET_SEALS) == F_SEAL_SEAL, "memfd without sealing: F_SEAL_SEAL");
    close(plain);
    close(fd);
    return corpus_verdict();
}
