/*
 * stdio_loop: upper-case stdin to stdout, one line at a time.
 *
 *   stdio_loop [--exit N]
 *
 * Reads fd 0 with read(2) and, for every complete line, makes one write(2) of
 * that line upper-cased to fd 1.  At EOF a trailing partial line is written
 * too, and the program exits 0, or N with --exit N.  No stdio buffering is
 * involved, so the syscall sequence follows the input exactly.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_BYTES 65536

static char line[LINE_MAX_BYTES];
static size_t line_len;

/* Write the collected line upper-cased (ASCII only) and start a new one. */
static void flush_line(void)
{
    for (size_t i = 0; i < line_len; i++)
        if (line[i] >= 'a' && line[i] <= 'z')
            line[i] = (char)(line[i] - 'a' + 'A');
    size_t off = 0;
    while (off < line_len) {
        ssize_t n = write(1, line + off, line_len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            exit(1); /* stdout closed */
        }
        off += (size_t)n;
    }
    line_len = 0;
}

int main(int argc, char **argv)
{
    int status = 0;
    if (argc == 3 && strcmp(argv[1], "--exit") == 0)
        status = atoi(argv[2]);
    else if (argc != 1) {
        static const char usage[] = "usage: stdio_loop [--exit N]\n";
        write(2, usage, sizeof usage - 1);
        return 2;
    }

    char buf[4096];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (n == 0)
            break; /* EOF */
        for (ssize_t i = 0; i < n; i++) {
            line[line_len++] = buf[i];
            /* A line ends at '\n'; an over-long line is written in pieces. */
            if (buf[i] == '\n' || line_len == sizeof line)
                flush_line();
        }
    }
    flush_line(); /* trailing partial line, if any */
    return status;
}
