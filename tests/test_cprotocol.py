"""The C protocol codec (mvx/mechanics/native/mvx_protocol.c) against the Python one
(mvx/core/protocol.py): tests/c/protocol_check.c, compiled here with -Werror (and ASan/UBSan when
the compiler has them), decodes and re-encodes frames; every golden record and every Python sample
comes back byte for byte with the same messages, and on random, truncated and corrupted frames the
C decoder never crashes and accepts exactly what the Python decoder accepts, with the same error
string."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_protocol import SAMPLES  # tests/ is on sys.path (pytest's rootdir-less test modules)

from mvx.core.protocol import (
    _U32,
    MESSAGES,
    Ack,
    CallRecord,
    CheckRequest,
    FollowerEnded,
    ProtocolError,
    _Writer,
    decode_body,
    encode,
    encode_batch,
)
from mvx.isa.canonical import IoVec
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import Addr, FlagSet

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "mvx" / "mechanics" / "native"
DRIVER = ROOT / "tests" / "c" / "protocol_check.c"
VECTORS = sorted((ROOT / "tests" / "golden").glob("*/*.json"))
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found: the C protocol codec cannot be tested", pytrace=False)
    out = tmp_path_factory.mktemp("cprotocol") / "protocol_check"
    base = [gcc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE}",
            str(NATIVE / "mvx_protocol.c"), str(DRIVER), "-o", str(out)]
    done = subprocess.run(base[:1] + SANITIZE + base[1:], capture_output=True, text=True, check=False)
    sanitized = done.returncode == 0
    if not sanitized:  # no sanitizer runtime here: the plain build must still pass (said in the output)
        print("protocol_check: built without ASan/UBSan:", done.stderr.strip().splitlines()[-1:])
        done = subprocess.run(base, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return out, sanitized


def run(driver, frames: list[bytes], verbose: bool = True) -> list[str]:
    """One driver process for every frame: one output line each."""
    exe, _ = driver
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    done = subprocess.run([str(exe)] + (["-v"] if verbose else []), input="".join(f.hex() + "\n" for f in frames),
                          capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0 and not done.stderr, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == len(frames)
    return lines


# ---- the driver's dump of a message, rendered from the Python decoder's ---------------------------


def q(raw: bytes) -> str:
    return '"' + "".join(chr(c) if 0x20 <= c < 0x7f and c not in b'"\\' else f"\\x{c:02x}" for c in raw) + '"'


def qs(s: str) -> str:
    return q(s.encode())


def encoded(v) -> bytes:
    w = _Writer()
    w.value(v, 1)
    return bytes(w.out)


def dump(v) -> str:
    if v is None:
        return "N"
    if v is True or v is False:
        return "T" if v else "F"
    if isinstance(v, int):
        if -(1 << 63) <= v < (1 << 63):
            return f"i{v}"
        if 0 <= v < (1 << 64):
            return f"u{v}"
        return "big" + v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True).hex()
    if isinstance(v, str):
        return qs(v)
    if isinstance(v, bytes):
        return "b" + q(v)
    if isinstance(v, list):
        return "[" + ",".join(map(dump, v)) + "]"
    if isinstance(v, tuple):
        return "(" + ",".join(map(dump, v)) + ")"
    if isinstance(v, dict):
        return "{" + ",".join(f"{qs(k)}:{dump(x)}" for k, x in v.items()) + "}"
    if isinstance(v, TimeValue):
        return f"time({v.sec},{v.nsec},{int(v.usec)})"
    if isinstance(v, SockAddr):
        return f"sock({dump(v.family)};" + ",".join(f"{qs(k)}={dump(x)}" for k, x in v.fields) + ")"
    if isinstance(v, FlagSet):
        return "flags(" + "".join(qs(n) + "," for n in sorted(v.names, key=str.encode)) + f";{dump(v.rest)})"
    if isinstance(v, Addr):
        return f"@{v.value}"
    if isinstance(v, IoVec):
        return "iov(" + ",".join("b" + q(p) for p in v.parts) + ")"
    if isinstance(v, frozenset):
        return "set(" + ",".join(dump(x) for x in sorted(v, key=encoded)) + ")"
    raise AssertionError(f"no dump for {v!r}")


def opt(v, render=str) -> str:
    return "-" if v is None else render(v)


def dump_msg(m) -> str:
    name = type(m).__name__
    if name == "Hello":
        return f"Hello version={m.version} role={qs(m.role)} arch={qs(m.arch)} policy={qs(m.policy)}"
    if name == "CallRecord":
        outputs = ",".join(f"{i}:{dump(v)}" for i, v in sorted(m.outputs.items()))
        clock = "-" if m.clock is None else f"{m.clock[0]},{m.clock[1]}"
        return (f"CallRecord seq={m.seq} cls={qs(m.cls)} view={dump(m.view)} ret={opt(m.ret)} outputs={{{outputs}}}"
                f" content={opt(m.content, qs)} clock={clock}")
    if name == "CheckRequest":
        return f"CheckRequest seq={m.seq} view={dump(m.view)} content={opt(m.content, qs)}"
    if name in ("Checked", "Ack"):
        return f"{name} seq={m.seq}"
    if name == "SignalBatch":
        sigs = ",".join(f"{n}:b{q(info)}" for n, info in m.sigs)
        return f"SignalBatch seq={m.seq} how={qs(m.how)} sigs=[{sigs}]"
    if name == "End":
        return f"End seq={m.seq} status={opt(m.status)} signal={opt(m.signal)}"
    if name in ("StopSession", "FollowerStopped"):
        return f"{name} reason={qs(m.reason)}"
    if name == "DivergenceReport":
        return (f"DivergenceReport kind={qs(m.kind)} seq={m.seq} leader={qs(m.leader)} follower={qs(m.follower)}"
                f" detail={qs(m.detail)} forensics={qs(m.forensics)}")
    if name == "FollowerEnded":
        return f"FollowerEnded status={opt(m.status)} signal={opt(m.signal)}"
    if name == "Started":
        return f"Started pid={m.pid}"
    raise AssertionError(name)


def python_line(body: bytes) -> str:
    """What the driver must print for a frame with this body, from the Python decoder."""
    try:
        messages = decode_body(body)
    except ProtocolError as exc:
        return f"error {exc}"
    types = ",".join(type(m).__name__ for m in messages)
    return f"ok {len(messages)} {types}\t" + "\t".join(dump_msg(m) for m in messages)


def top_level_items(text: str) -> int:
    """Items of a dumped comma-separated list (commas inside brackets or quotes do not count)."""
    depth, quoted, n = 0, False, 0
    for i, c in enumerate(text):
        if quoted:
            quoted = c != '"'
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            n += 1
    return n + 1 if text else 0


def frame_of(body: bytes) -> bytes:
    return _U32.pack(len(body)) + body


# ---- the tests ------------------------------------------------------------------------------------


def test_every_golden_record_round_trips_with_the_same_messages(driver):
    import json

    frames = [bytes.fromhex(json.loads(p.read_text())["record"]) for p in VECTORS]
    assert len(frames) == 102
    for path, frame, line in zip(VECTORS, frames, run(driver, frames)):
        assert line == python_line(frame[4:]), path
        record = decode_body(frame[4:])[-1]
        assert isinstance(record, CallRecord)
        last = line.split("\t")[-1]
        seq, cls = re.match(r"CallRecord seq=(\d+) cls=(\S+) view=", last).groups()
        ret, outputs = re.search(r" ret=(\S+) outputs=\{(.*)\} content=", last).groups()
        assert (int(seq), cls, ret) == (record.seq, qs(record.cls), opt(record.ret)), path
        assert top_level_items(outputs) == len(record.outputs), path


def test_every_python_sample_round_trips(driver):
    big = CheckRequest(1, ["x", [{f"k{i}": i for i in range(2000)}, frozenset(range(-1000, 1000)) | {True, "s", b"b"},
                                 FlagSet(frozenset(f"F{i}" for i in range(500)), 1 << 80), b"\x00" * (1 << 20)]])
    frames = [encode(m) for m in SAMPLES] + [encode_batch(SAMPLES), encode_batch(SAMPLES[:3] * 5), encode(big)]
    assert {type(m) for m in SAMPLES} == set(MESSAGES)
    for frame, line in zip(frames, run(driver, frames)):
        assert line == python_line(frame[4:])
        assert line.startswith("ok ")


def equal_item_sets() -> list[bytes]:
    def set_frame(*items):
        body = bytes([3]) + bytes(8) + bytes([15]) + _U32.pack(len(items)) + b"".join(sorted(items)) + b"\x00"
        return frame_of(body)

    frames = [
        set_frame(bytes([2]), bytes([3]) + (1).to_bytes(8, "little")),
        set_frame(encoded(TimeValue(1, 2)), encoded(TimeValue(1, 2, True))),
        set_frame(encoded(IoVec((b"ab",))), encoded(IoVec((b"a", b"b")))),
        set_frame(encoded((0,)), encoded((False,))),
        set_frame(encoded(frozenset({1})), bytes([15]) + _U32.pack(1) + bytes([2])),
        set_frame(bytes([2]), bytes([3]) + (2).to_bytes(8, "little")),  # True and 2: fine
    ]
    return frames


def test_sets_of_values_equal_in_python_are_refused_by_both(driver):
    """{True, 1}, two TimeValues differing in usec only, two IoVecs with the same joined bytes: sorted
    and distinct as bytes, but one item in a Python frozenset; neither decoder takes them."""
    frames = equal_item_sets()
    lines = run(driver, frames)
    for frame, line in zip(frames, lines):
        assert line == python_line(frame[4:])
    assert all(line.startswith("error CheckRequest.view: set items") for line in lines[:-1])
    assert lines[-1].startswith("ok 1 CheckRequest")


def test_errors_name_the_field_as_python_does(driver):
    bodies = [b"", b"\x7f", b"\x05\x01\x02", b"\x08\xff\xff\xff\x7fabc", b"\x08\x02\x00\x00\x00\xff\xfe",
              b"\x03" + bytes(8) + b"\x63", b"\x03" + bytes(8) + b"\x08\xff\xff\xff\xff",
              b"\x03" + bytes(8) + b"\x04" + (5).to_bytes(8, "little") + b"\x00",
              b"\x03" + bytes(8) + b"\x00\x07", b"\x05" + bytes(8) + b"\x66",
              bytes([3]) + (1).to_bytes(8, "little") + bytes([8, 1, 0, 0, 0]) * 40 + bytes([0, 0]),
              bytes([3]) + bytes(8) + bytes([9]) + _U32.pack(2) + (b"\x01\x00\x00\x00k" + b"\x00") * 2 + b"\x00",
              bytes([3]) + bytes(8) + bytes([5]) + _U32.pack(9) + (1 << 64).to_bytes(9, "little") + b"\x00",
              bytes([3]) + bytes(8) + bytes([5]) + _U32.pack(10) + (1 << 64).to_bytes(10, "little") + b"\x00",
              bytes([3]) + bytes(8) + bytes([5]) + _U32.pack(2) + b"\xff\xff" + b"\x00",
              encode(CallRecord(1, "x", [{"a'b": [1, 2, {"\u00e9\n": b"\x00"}]}], 0, {3: 1}))[4:-30]]
    lines = run(driver, [frame_of(b) for b in bodies], verbose=False)
    for body, line in zip(bodies, lines):
        want = python_line(body)
        assert line == (want if want.startswith("error") else want.split("\t")[0])
    assert [line.startswith("error ") for line in lines].count(False) == 1  # 2**64 as a bigint is canonical
    assert lines[-1] == "error CallRecord.view[0][\"a'b\"][2]['\u00e9\\n']: truncated u32 (need 4 bytes, have 3)"


def fuzz_cases() -> list[bytes]:
    rng = random.Random(20261128)
    import json

    valid = [encode(m)[4:] for m in SAMPLES] + [encode_batch(SAMPLES[6:12])[4:]]
    valid += [bytes.fromhex(json.loads(p.read_text())["record"])[4:] for p in VECTORS[::7]]
    cases = [rng.randbytes(rng.randrange(0, 64)) for _ in range(1000)]
    cases += [bytes([rng.randrange(1, 13)]) + rng.randbytes(rng.randrange(0, 48)) for _ in range(1000)]
    for body in valid:
        n = len(body)
        cuts = range(n) if n <= 300 else sorted({*range(200), *range(n - 100, n), *range(0, n, max(1, n // 100))})
        cases += [body[:k] for k in cuts]
        for _ in range(120):
            b = bytearray(body)
            b[rng.randrange(n)] = rng.choice((0, 1, 2, 0x7f, 0x80, 0xff, rng.randrange(256)))
            cases.append(bytes(b))
        for _ in range(20):  # a corrupted byte and a cut
            b = bytearray(body)
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
            cases.append(bytes(b[:rng.randrange(1, n + 1)]))
    return cases


class Grammar:
    """Random bodies from the wire grammar itself, each choice nearly always valid: a small u64 under
    the u64 tag, a big integer of random bytes, unsorted or repeated flag names, set items out of
    order or equal as values, a repeated dict key, a string with a bad UTF-8 sequence, a presence
    byte of 2, an output index over 255 or out of order, nesting around 32 (what corrupting a valid
    frame one byte at a time rarely reaches)."""

    PIECES = (b"a", b"Z", b"'", b'"', b"\\", b"\n", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"\xe2\x82\xac")
    BAD = (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"\xe2\x82", b"\x80", b"\xff")
    NAMES = ("O_RDWR", "O_CLOEXEC", "O_NONBLOCK", "b", "a", "\u00e9")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def odd(self, p: float = 0.04) -> bool:
        return self.rng.random() < p

    def u32(self, v: int) -> bytes:
        return _U32.pack(v)

    def text(self) -> bytes:
        raw = b"".join(self.rng.choice(self.PIECES) for _ in range(self.rng.randrange(4)))
        if self.odd():
            raw += self.rng.choice(self.BAD)
        return raw

    def str_(self, raw: bytes | None = None) -> bytes:
        raw = self.text() if raw is None else raw
        return self.u32(len(raw)) + raw

    def i64(self) -> int:
        return self.rng.choice([0, 1, -1, 2, 1 << 62, -(1 << 63), (1 << 63) - 1, self.rng.randrange(-999, 999)])

    def big(self) -> bytes:
        if self.odd(0.3):
            raw = self.rng.randbytes(self.rng.randrange(0, 12))
        else:
            v = self.rng.choice([1 << 64, -(1 << 63) - 1, 1 << 70, -(1 << 90), -(1 << 95), (1 << 71) - 1, 1 << 200])
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return self.u32(len(raw)) + raw

    def value(self, depth: int = 0, hashable: bool = False) -> bytes:
        rng = self.rng
        if depth < 2 and self.odd(0.01):  # a chain of lists around the depth limit
            n = rng.randrange(30, 35)
            return bytes([8, 1, 0, 0, 0]) * n + b"\x00"
        tags = [0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 10, 12, 13, 14, 16] + ([] if hashable else [8, 9])
        if depth < 3:
            tags += [11, 15] + ([] if hashable else [8, 9, 16])
        tag = rng.choice(tags) if not self.odd(0.005) else rng.randrange(17, 256)
        out = bytes([tag])
        if tag == 3:
            return out + self.i64().to_bytes(8, "little", signed=True)
        if tag == 4:
            v = rng.randrange(1 << 63, 1 << 64) if not self.odd(0.1) else rng.randrange(0, 1 << 63)
            return out + v.to_bytes(8, "little")
        if tag == 5:
            return out + self.big()
        if tag == 6:
            return out + self.str_()
        if tag in (7,):
            return out + self.str_(rng.randbytes(rng.randrange(5)))
        if tag in (8, 16):
            items = [self.value(depth + 1, hashable) for _ in range(rng.randrange(4))]
            return out + self.u32(len(items)) + b"".join(items)
        if tag == 9:
            pool = [b"a", b"b", b"c", b"d", b"e\xc3\xa9"]
            n = rng.randrange(4)
            if self.odd(0.2):  # over 8 keys: the decoder's hash table
                pool, n = [bytes([97 + i]) for i in range(13)], rng.randrange(9, 13)
            keys = [rng.choice(pool) for _ in range(n)]
            if not self.odd(0.2):
                keys = list(dict.fromkeys(keys))
            return out + self.u32(len(keys)) + b"".join(self.str_(k) + self.value(depth + 1) for k in keys)
        if tag == 10:
            flag = rng.choice([0, 1]) if not self.odd() else 2
            return out + self.i64().to_bytes(8, "little", signed=True) + rng.choice([0, 999999999]).to_bytes(
                8, "little", signed=True) + bytes([flag])
        if tag == 11:
            fields = [self.str_() + self.value(depth + 1, hashable) for _ in range(rng.randrange(3))]
            return out + self.value(depth + 1, hashable) + self.u32(len(fields)) + b"".join(fields)
        if tag == 12:
            names = [rng.choice(self.NAMES).encode() for _ in range(rng.randrange(4))]
            if not self.odd(0.15):
                names = sorted(set(names))
            rest = self.value(depth + 1) if self.odd(0.1) else bytes([3]) + self.i64().to_bytes(8, "little", signed=True)
            return out + self.u32(len(names)) + b"".join(self.str_(n) for n in names) + rest
        if tag == 13:
            return out + rng.randrange(1 << 64).to_bytes(8, "little")
        if tag == 14:
            parts = [rng.choice([b"", b"a", b"ab", b"b"]) for _ in range(rng.randrange(4))]
            return out + self.u32(len(parts)) + b"".join(self.str_(p) for p in parts)
        if tag == 15:
            pool = [bytes([1]), bytes([2]), bytes([3]) + (1).to_bytes(8, "little"), bytes([3]) + bytes(8),
                    encoded(TimeValue(1, 2)), encoded(TimeValue(1, 2, True)), encoded(IoVec((b"ab",))),
                    encoded(IoVec((b"a", b"b"))), encoded((1, "x")), encoded((True, "x"))]
            items = [rng.choice(pool) if rng.random() < 0.5 else self.value(depth + 1, not self.odd(0.1))
                     for _ in range(rng.randrange(4))]
            if not self.odd(0.1):
                items = sorted(set(items))
            return out + self.u32(len(items)) + b"".join(items)
        return out  # None, False, True, an unknown tag

    def flag(self) -> bytes:
        return bytes([self.rng.choice([0, 1]) if not self.odd(0.02) else 2])

    def opt_i64(self) -> bytes:
        b = self.flag()
        return b + (self.i64().to_bytes(8, "little", signed=True) if b == b"\x01" else b"")

    def opt_str(self) -> bytes:
        b = self.flag()
        return b + (self.str_() if b == b"\x01" else b"")

    def message(self) -> bytes:
        rng = self.rng
        code = rng.choice([2, 2, 2, 3, 3, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12]) if not self.odd(0.01) else rng.randrange(256)
        seq = rng.randrange(1 << 64).to_bytes(8, "little")
        if code == 1:
            return bytes([1]) + self.u32(2) + self.str_() + self.str_() + self.str_()
        if code == 2:
            indexes = sorted(rng.sample(range(8), rng.randrange(4)))
            if self.odd(0.1):
                indexes = [rng.choice([0, 3, 255, 256, 300]) for _ in range(rng.randrange(1, 4))]
            outputs = self.u32(len(indexes)) + b"".join(self.u32(i) + self.value(1) for i in indexes)
            clock = self.flag()
            if clock == b"\x01":
                clock += bytes(16)
            return (bytes([2]) + seq + self.str_() + self.value() + self.opt_i64() + outputs + self.opt_str()
                    + clock)
        if code == 3:
            return bytes([3]) + seq + self.value() + self.opt_str()
        if code in (4, 5, 12):
            return bytes([code]) + seq
        if code == 6:
            sigs = [self.u32(rng.randrange(65)) + self.str_(rng.choice([b"", bytes(128)])) for _ in range(rng.randrange(3))]
            return bytes([6]) + seq + self.str_() + self.u32(len(sigs)) + b"".join(sigs)
        if code == 7:
            return bytes([7]) + seq + self.opt_i64() + self.opt_i64()
        if code in (8, 10):
            return bytes([code]) + self.str_()
        if code == 9:
            return bytes([9]) + self.str_() + seq + self.str_() + self.str_() + self.str_()
        if code == 11:
            return bytes([11]) + self.opt_i64() + self.opt_i64()
        return bytes([code])

    def body(self) -> bytes:
        return b"".join(self.message() for _ in range(self.rng.choice([1, 1, 1, 2, 3])))


def test_fuzz_from_the_grammar_same_verdict_as_python(driver):
    grammar = Grammar(20261129)
    rng = random.Random(7)
    cases = []
    for _ in range(3000):
        body = grammar.body()
        cut = bytearray(body[:rng.randrange(len(body))])
        if cut:
            cut[rng.randrange(len(cut))] ^= 1 << rng.randrange(8)
        cases += [body, bytes(cut)]
    lines = run(driver, [frame_of(b) for b in cases])
    differ = [(body.hex(), line[:300], python_line(body)[:300]) for body, line in zip(cases, lines)
              if line != python_line(body)]
    assert not differ, f"{len(differ)} of {len(cases)} differ, first: {differ[:3]}"
    verdicts = {line.split(":")[-1].split("(")[0].strip() if line.startswith("error") else "ok" for line in lines}
    assert len(verdicts) > 15, verdicts  # many different rejections are reached


def test_fuzz_same_verdict_as_python_and_no_crash(driver):
    cases = fuzz_cases()
    assert len(cases) > 5000
    lines = run(driver, [frame_of(b) for b in cases])
    differ = [(body.hex(), line[:300], python_line(body)[:300]) for body, line in zip(cases, lines)
              if line != python_line(body)]
    assert not differ, f"{len(differ)} of {len(cases)} differ, first: {differ[:3]}"
    accepted = sum(line.startswith("ok ") for line in lines)
    assert 100 < accepted < len(cases) - 1000  # both verdicts are exercised


def test_binary_stream_and_oversized_header(driver):
    exe, _ = driver
    stream = b"".join(encode(m) for m in SAMPLES[:4]) + (16 << 20 | 1).to_bytes(4, "little")
    done = subprocess.run([str(exe), "-b"], input=stream, capture_output=True, check=False,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    lines = done.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4 + ["error"]
    assert lines[-1] == "error frame: 16777217 bytes announced, over the 16777216-byte limit"


def test_a_check_request_is_a_check_request(driver):
    (line,) = run(driver, [encode(CheckRequest(7, ["writev", [5, b"x", 2]], "d"))])
    assert line == 'ok 1 CheckRequest\tCheckRequest seq=7 view=["writev",[i5,b"x",i2]] content="d"'


def test_messages_built_in_c_encode_as_python_and_bad_trees_are_refused(driver):
    """-t: a batch built from structs (not decoded) encodes to Python's bytes; a buffer one byte
    short is MVX_E_NOSPACE (-2); a tree with no canonical encoding is MVX_E_INVAL (-3)."""
    exe, _ = driver
    done = subprocess.run([str(exe), "-t"], capture_output=True, text=True, check=True,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    got = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    want = encode_batch([Ack(0x0102), CallRecord(5, "replicated", ["read", [5, None, 4096]], 13, {1: b"GET"}, None,
                                                 (5, 6)), FollowerEnded(0, None)])
    assert got.pop("frame") == want.hex()
    assert got.pop("deep-32") == encoded_top(nest(32))
    assert got == {"nospace": "-2", "empty": "-3", "u64-small": "-3", "bigint-small": "-3", "flags-unsorted": "-3",
                   "set-unsorted": "-3", "set-repeated": "-3", "str-not-utf8": "-3", "deep-33": "-3",
                   "output-256": "-3", "type-13": "-3"}


def nest(n: int):
    v = None
    for _ in range(n):
        v = [v]
    return v


def encoded_top(v) -> str:
    w = _Writer()
    w.value(v)
    return bytes(w.out).hex()
