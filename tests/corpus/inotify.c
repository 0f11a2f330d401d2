/* inotify: inotify_init1, add_watch on the cwd, the events of creating, writing, closing,
 * renaming and removing a file (read and printed in order), rm_watch and its IN_IGNORED. */
#include "corpus.h"
#include <sys/inotify.h>
#include <sys/stat.h>

static void drain(int in, int wd)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            static const struct { uint32_t m; const char *s; } names[] = {
                {IN_CREATE, "IN_CREATE"}, {IN_MODIFY, "IN_MODIFY"}, {IN_CLOSE_WRITE, "IN_CLOSE_WRITE"},
                {IN_MOVED_FROM, "IN_MOVED_FROM"}, {IN_MOVED_TO, "IN_MOVED_TO"}, {IN_DELETE, "IN_DELETE"},
                {IN_ATTRIB, "IN_ATTRIB"}, {IN_IGNORED, "IN_IGNORED"}, {IN_ISDIR, "IN_ISDIR"}};
            printf("event%s:", e->wd == wd ? "" : " (other wd)");
            for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
                if (e->mask & names[i].m)
                    printf(" %s", names[i].s);
            printf(" %s%s\n", e->len ? e->name : "-", e->cookie ? " (cookie)" : "");
            p += sizeof *e + e->len;
        }
    }
}

int main(int argc, char **argv)
{
    char buf[16];
    corpus_enter(argc, argv);
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    check(in >= 0, "inotify_init1");
    check(read(in, buf, sizeof buf) < 0 && errno == EAGAIN, "read with no event: EAGAIN");
    int wd = inotify_add_watch(in, ".", IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVE | IN_DELETE | IN_ATTRIB);
    check(wd >= 0, "inotify_add_watch .");
    int fd = open("n.tmp", O_CREAT | O_EXCL | O_WRONLY, 0600);
    check(fd >= 0, "create n.tmp");
    check(write(fd, "data", 4) == 4, "write n.tmp");
    check(close(fd) == 0, "close n.tmp");
    check(chmod("n.tmp", 0640) == 0, "chmod n.tmp");
    check(rename("n.tmp", "m.tmp") == 0, "rename to m.tmp");
    check(mkdir("nd.tmp", 0700) == 0 && rmdir("nd.tmp") == 0, "mkdir, rmdir nd.tmp");
    check(unlink("m.tmp") == 0, "unlink m.tmp");
    drain(in, wd);
    check(inotify_rm_watch(in, wd) == 0, "inotify_rm_watch");
    drain(in, wd);
    check(inotify_rm_watch(in, wd) < 0 && errno == EINVAL, "rm_watch again: EINVAL");
    close(in);
    return corpus_verdict();
}
