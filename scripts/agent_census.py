"""Census of a server's socket reads in an `mvx trace` (docs/proposals/in-process-agent.md, stage 0):
for each read/recv of a connection, what a monitor could have peeked at the trap before it.

    python3 -m mvx trace -o trace.txt -- LIGHTTPD -f CONF -D   # under wrk -t1 -c8 -d3s, then SIGTERM
    python3 scripts/agent_census.py trace.txt"""

from __future__ import annotations

import collections
import re
import sys

CALL = re.compile(r"^(\w+)\((.*)\) = (-?\d+|\?)")
EVENT = re.compile(r"\{events=([A-Z|]+), data=(0x[0-9a-f]+|\d+)\}")
DATA = re.compile(r"data=(0x[0-9a-f]+|\d+)")
# calls that stay trapped under the agent: at each, the monitor could peek every connection
STAYS_TRAPPED = {"writev", "write", "sendto", "sendfile", "accept4", "epoll_pwait", "epoll_ctl", "close", "shutdown",
                 "openat", "fcntl", "setsockopt", "getsockopt", "clock_gettime"}
EAGAIN, HIT, AFTER_ACCEPT, AFTER_TRAP, MISS = (
    "EAGAIN (nothing peeked: the agent answers EAGAIN)",
    "hit: data or EOF reported by the epoll wait before",
    "first read after its accept4 (a hit if the bytes had arrived by that trap)",
    "after another trapped call (a hit if the bytes had arrived by then)",
    "miss: no trap since its last read (the bytes came while the agent served)",
)


class Census:
    def __init__(self) -> None:
        self.fd_of_data: dict[str, int] = {}
        self.conns: set[int] = set()
        self.ready: set[int] = set()  # reported readable by an epoll wait since their last read
        self.accepted: set[int] = set()  # accepted, not yet read
        self.trapped: set[int] = set()  # a call that stays trapped came since their last read
        self.count: collections.Counter = collections.Counter()
        self.requests = 0

    def line(self, text: str) -> None:
        m = CALL.match(text)
        if not m:
            return
        name, args, ret_text = m.groups()
        ret = None if ret_text == "?" else int(ret_text)
        if name in STAYS_TRAPPED:
            self.trapped.update(self.conns)
        if name == "accept4" and ret is not None and ret >= 0:
            self.conns.add(ret)
            self.accepted.add(ret)
        elif name == "epoll_ctl":
            op, fd = args.split(", ")[1], int(args.split(", ")[2])
            data = DATA.search(args)
            if data and ("ADD" in op or "MOD" in op):
                self.fd_of_data[data.group(1)] = fd
        elif name == "epoll_pwait" and ret:
            for events, data in EVENT.findall(args):
                fd = self.fd_of_data.get(data)
                if fd in self.conns and any(e in events for e in ("EPOLLIN", "EPOLLRDHUP", "EPOLLHUP")):
                    self.ready.add(fd)
        elif name == "close":
            fd = int(args.split(",")[0])
            for group in (self.conns, self.ready, self.accepted, self.trapped):
                group.discard(fd)
        elif name in ("read", "recvfrom") and "MSG_TRUNC" not in args:
            self.read(int(args.split(",")[0]), args, ret)

    def read(self, fd: int, args: str, ret: int | None) -> None:
        if fd not in self.conns:
            return
        if ret and ret > 0 and '"GET' in args:
            self.requests += 1
        kind = (EAGAIN if ret == -11 else HIT if fd in self.ready else AFTER_ACCEPT if fd in self.accepted
                else AFTER_TRAP if fd in self.trapped else MISS)
        self.count[kind] += 1
        for group in (self.ready, self.accepted, self.trapped):
            group.discard(fd)


def main(path: str) -> None:
    census = Census()
    with open(path) as f:
        for text in f:
            census.line(text)
    total = sum(census.count.values())
    print(f"{total} reads of connections, {census.requests} requests read")
    for kind, n in census.count.most_common():
        print(f"  {n:7d} {100 * n / max(total, 1):5.1f}%  {n / max(census.requests, 1):.2f}/request  {kind}")


if __name__ == "__main__":
    main(sys.argv[1])
