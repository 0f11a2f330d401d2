"""Generated per-ISA tables (one module per arch), loaded lazily by mvx.isa.arch.

The modules are written by scripts/gen_archdata.py from the kernel UAPI and libc headers and the
compiler of each ISA; never edit them by hand, regenerate them (`python3 scripts/gen_archdata.py`).
"""

ARCH_MODULES = ("x86_64", "i386", "aarch64")
