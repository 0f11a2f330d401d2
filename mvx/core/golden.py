"""Golden vectors through the Python implementation: a leader's raw call to the bytes of what it
sends, and a follower's raw call plus those bytes to its plan (tests/golden/, scripts/gen_golden.py).

A vector is plain JSON so that another implementation (the C data plane) can be checked against
the same files: registers and memory in, frame bytes and writes out. The policy is `default`."""

from __future__ import annotations

from mvx import MvxError
from mvx.core import policy as policymod
from mvx.core.outputs import EpollRegistry
from mvx.core.protocol import CallRecord, CheckRequest, FrameDecoder, ProtocolError, encode_batch
from mvx.core.sync import FollowerSync, LeaderSync, content_digest, sent_file_range
from mvx.isa.canonical import BytesMemory, RawSyscall, decode_outputs, normalize

POLICY = "default"


class GoldenError(MvxError):
    """A vector that does not hold together (one line, naming the field)."""


def _memory(side: dict, key: str = "memory") -> dict[int, bytes]:
    try:
        return {int(k, 16): bytes.fromhex(v) for k, v in (side.get(key) or {}).items()}
    except (ValueError, AttributeError) as exc:
        raise GoldenError(f"{key}: {exc}") from None


def _call(side: dict, memory: dict[int, bytes]):
    try:
        raw = RawSyscall(side["arch"], int(side["nr"]), tuple(int(a) for a in side["args"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise GoldenError(f"arch/nr/args: {exc!r}") from None
    return normalize(raw, BytesMemory(memory))


def _epoll(side: dict) -> EpollRegistry:
    registry = EpollRegistry()
    for epfd, fd, data in side.get("epoll") or []:
        registry.on_ctl(epfd, "EPOLL_CTL_ADD", fd, data)
    return registry


def _content(call, side: dict) -> str | None:
    sent = sent_file_range(call)
    if sent is None:
        return None
    _, offset, count = sent
    data = bytes.fromhex(side.get("file", ""))
    start = offset or 0
    return content_digest(data[start:start + count])


def lead(side: dict) -> bytes:
    """The leader's side: one frame holding its check request (when the call is lockstepped) and
    its record."""
    policy = policymod.load(POLICY)
    memory = _memory(side)
    call = _call(side, memory)
    cls = policy.class_of(call.name, side.get("fd_kind") in ("file", "dir")) or "local"  # a file it opened
    sync = LeaderSync(policy)
    content = _content(call, side)
    plan = sync.plan(call, cls, content)
    ret = side.get("ret") if plan.wants_ret and not plan.ends else None
    outputs = {}
    if ret is not None:
        outputs = decode_outputs(call, BytesMemory({**memory, **_memory(side, "memory_after")}), ret).outputs
    record = sync.record(call, ret, outputs, cls, content=content, epoll=_epoll(side))
    return encode_batch([m for m in (plan.check, record) if m is not None])


def follow(side: dict, frame: bytes, leader: dict | None = None) -> dict:
    """The follower's side: its plan for its own call against the leader's frame, as plain data
    (the writes are what it puts in its own memory)."""
    policy = policymod.load(POLICY)
    decoder = FrameDecoder()
    try:
        messages = list(decoder.feed(frame))
    except ProtocolError as exc:
        raise GoldenError(f"record: {exc}") from None
    if decoder.pending or not messages or not isinstance(messages[-1], CallRecord):
        raise GoldenError("record: not one whole frame ending with a CallRecord")
    memory = _memory(side)
    call = _call(side, memory)
    cls = policy.class_of(call.name, side.get("fd_kind") in ("file", "dir")) or "local"  # a file it opened
    content = _content(call, side)
    sync = FollowerSync(policy)
    checked = [sync.check(call, m, content).seq for m in messages if isinstance(m, CheckRequest)]
    record = messages[-1]
    from mvx.isa import arch as archmod

    plan = sync.on_call(call, record, cls, content=content, mem=BytesMemory(memory), arch=archmod.get(call.arch),
                        epoll=_epoll(side))
    if plan.compare_ret and leader is not None:
        sync.after_local(call, leader["ret"], record)  # the follower's own call returns what the leader's did
    return {"checked": checked, "action": plan.action.value, "ret": plan.ret,
            "writes": [[hex(addr), data.hex()] for addr, data in plan.writes],
            "creates_fd": plan.creates_fd, "cloexec": plan.cloexec, "nonblock": plan.nonblock,
            "compare_ret": plan.compare_ret, "ack": plan.ack is not None}
