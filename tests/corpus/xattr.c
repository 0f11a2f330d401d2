/* xattr: setxattr/getxattr/listxattr/removexattr on a file in the cwd, the f* and l* forms,
 * XATTR_CREATE/XATTR_REPLACE, size queries. A filesystem without user xattrs is reported as such
 * (one line) and passes. */
#include "corpus.h"
#include <sys/xattr.h>

int main(int argc, char **argv)
{
    char buf[128];
    corpus_enter(argc, argv);
    int fd = open("x.tmp", O_CREAT | O_EXCL | O_RDWR, 0600);
    check(fd >= 0, "open x.tmp");
    check(write(fd, "data", 4) == 4, "write x.tmp");
    if (setxattr("x.tmp", "user.corpus", "value", 5, 0) < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) {
        note("xattr: user xattrs unsupported here");
        close(fd);
        unlink("x.tmp");
        return corpus_verdict();
    }
    check(getxattr("x.tmp", "user.corpus", NULL, 0) == 5, "getxattr size query: 5");
    memset(buf, 0, sizeof buf);
    check(getxattr("x.tmp", "user.corpus", buf, sizeof buf) == 5 && !strcmp(buf, "value"), "getxattr: value");
    check(getxattr("x.tmp", "user.corpus", buf, 2) < 0 && errno == ERANGE, "getxattr small buffer: ERANGE");
    check(setxattr("x.tmp", "user.corpus", "v2", 2, XATTR_CREATE) < 0 && errno == EEXIST, "XATTR_CREATE again: EEXIST");
    check(setxattr("x.tmp", "user.other", "v2", 2, XATTR_REPLACE) < 0 && errno == ENODATA, "XATTR_REPLACE missing: ENODATA");
    check(fsetxattr(fd, "user.second", "\0\1\2\3", 4, 0) == 0, "fsetxattr binary value");
    check(fgetxattr(fd, "user.second", buf, sizeof buf) == 4 && !memcmp(buf, "\0\1\2\3", 4), "fgetxattr");
    ssize_t n = listxattr("x.tmp", buf, sizeof buf);
    int seen = 0;
    for (char *k = buf; n > 0 && k < buf + n; k += strlen(k) + 1)
        seen += !strcmp(k, "user.corpus") || !strcmp(k, "user.second");
    check(seen == 2, "listxattr names both");
    check(flistxattr(fd, NULL, 0) == n, "flistxattr size matches");
    check(symlink("x.tmp", "xl.tmp") == 0, "symlink xl.tmp");
    check(lgetxattr("xl.tmp", "user.corpus", buf, sizeof buf) < 0 && errno == ENODATA, "lgetxattr on the link: ENODATA");
    check(getxattr("xl.tmp", "user.corpus", buf, sizeof buf) == 5, "getxattr through the link");
    check(llistxattr("xl.tmp", buf, sizeof buf) >= 0, "llistxattr on the link");
    check(lsetxattr("xl.tmp", "user.x", "1", 1, 0) < 0 && errno == EPERM, "lsetxattr user.* on a symlink: EPERM");
    check(removexattr("x.tmp", "user.corpus") == 0, "removexattr");
    check(fremovexattr(fd, "user.second") == 0, "fremovexattr");
    check(getxattr("x.tmp", "user.corpus", buf, sizeof buf) < 0 && errno == ENODATA, "getxattr removed: ENODATA");
    check(listxattr("x.tmp", buf, sizeof buf) >= 0, "listxattr after removal");
    close(fd);
    check(unlink("xl.tmp") == 0 && unlink("x.tmp") == 0, "unlink");
    return corpus_verdict();
}
