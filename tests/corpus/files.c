/* files: open/creat with O_EXCL, write and read back, pread/pwrite, lseek, fstat/stat/lstat,
 * ftruncate, rename, link/symlink/readlink, mkdir/rmdir, getdents (readdir), access, chmod,
 * unlink; everything in the cwd (or argv[1]). */
#include "corpus.h"
#include <dirent.h>
#include <sys/stat.h>

static int count_entries(const char *dir, const char *want, int *found)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    *found = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        n++;
        if (!strcmp(e->d_name, want) && e->d_type == DT_REG)
            *found = 1;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    struct stat st;
    char buf[64];
    int found;
    corpus_enter(argc, argv);

    int fd = open("f1.tmp", O_CREAT | O_EXCL | O_RDWR, 0600);
    check(fd >= 0, "open O_CREAT|O_EXCL");
    int fd2 = open("f1.tmp", O_CREAT | O_EXCL | O_RDWR, 0600);
    check(fd2 < 0 && errno == EEXIST, "open O_EXCL again: EEXIST");
    check(write(fd, "hello corpus\n", 13) == 13, "write 13 bytes");
    check(lseek(fd, 0, SEEK_CUR) == 13, "lseek SEEK_CUR is 13");
    check(lseek(fd, 0, SEEK_SET) == 0, "lseek SEEK_SET 0");
    memset(buf, 0, sizeof buf);
    check(read(fd, buf, sizeof buf) == 13 && !memcmp(buf, "hello corpus\n", 13), "read back 13 bytes");
    check(read(fd, buf, sizeof buf) == 0, "read at EOF is 0");
    check(pwrite(fd, "C", 1, 6) == 1, "pwrite at 6");
    check(pread(fd, buf, 6, 6) == 6 && !memcmp(buf, "Corpus", 6), "pread sees pwrite");
    check(fstat(fd, &st) == 0 && st.st_size == 13 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600,
          "fstat: regular, 13 bytes, 0600");
    check(ftruncate(fd, 5) == 0, "ftruncate to 5");
    check(fstat(fd, &st) == 0 && st.st_size == 5, "fstat: 5 bytes");
    check(lseek(fd, 0, SEEK_END) == 5, "lseek SEEK_END is 5");
    check(lseek(fd, 100, SEEK_SET) == 100 && write(fd, "x", 1) == 1, "write past the end");
    check(fstat(fd, &st) == 0 && st.st_size == 101, "fstat: sparse 101 bytes");
    check(fsync(fd) == 0 && fdatasync(fd) == 0, "fsync, fdatasync");
    check(close(fd) == 0, "close");

    int c = creat("f2.tmp", 0644);
    check(c >= 0, "creat");
    check(write(c, "two", 3) == 3, "write to creat'd file");
    check(close(c) == 0, "close creat'd file");
    check(access("f2.tmp", R_OK | W_OK) == 0, "access R_OK|W_OK");
    check(chmod("f2.tmp", 0400) == 0 && stat("f2.tmp", &st) == 0 && (st.st_mode & 0777) == 0400, "chmod 0400");

    check(rename("f1.tmp", "f3.tmp") == 0, "rename");
    check(stat("f1.tmp", &st) < 0 && errno == ENOENT, "stat old name: ENOENT");
    check(stat("f3.tmp", &st) == 0 && st.st_size == 101, "stat new name: 101 bytes");
    check(link("f3.tmp", "f4.tmp") == 0 && stat("f3.tmp", &st) == 0 && st.st_nlink == 2, "link: nlink 2");
    check(symlink("f3.tmp", "l.tmp") == 0, "symlink");
    memset(buf, 0, sizeof buf);
    check(readlink("l.tmp", buf, sizeof buf) == 6 && !strcmp(buf, "f3.tmp"), "readlink");
    check(lstat("l.tmp", &st) == 0 && S_ISLNK(st.st_mode), "lstat: a symlink");

    check(mkdir("d.tmp", 0755) == 0, "mkdir");
    check(mkdir("d.tmp", 0755) < 0 && errno == EEXIST, "mkdir again: EEXIST");
    int in = open("d.tmp/inner", O_CREAT | O_EXCL | O_WRONLY, 0600);
    check(in >= 0 && close(in) == 0, "create d.tmp/inner");
    check(rmdir("d.tmp") < 0 && errno == ENOTEMPTY, "rmdir non-empty: ENOTEMPTY");
    check(count_entries("d.tmp", "inner", &found) == 1 && found, "getdents d.tmp: just inner");
    int dfd = open("d.tmp", O_RDONLY | O_DIRECTORY);
    check(dfd >= 0 && fstatat(dfd, "inner", &st, 0) == 0 && st.st_size == 0, "fstatat in d.tmp");
    check(unlinkat(dfd, "inner", 0) == 0, "unlinkat inner");
    check(close(dfd) == 0, "close dir fd");
    check(rmdir("d.tmp") == 0, "rmdir");
    check(count_entries(".", "f3.tmp", &found) >= 4 && found, "getdents cwd: f3.tmp there");

    int bad = unlink("f1.tmp");
    check(bad < 0 && errno == ENOENT, "unlink missing: ENOENT");
    check(unlink("l.tmp") == 0 && unlink("f4.tmp") == 0 && unlink("f3.tmp") == 0 && unlink("f2.tmp") == 0,
          "unlink all");
    check(count_entries(".", "f3.tmp", &found) >= 0 && !found, "getdents cwd: f3.tmp gone");
    return corpus_verdict();
}
