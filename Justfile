# mvx task runner. Fresh machine: `bash scripts/setup.sh && just test` (or `just demo`).
# Extra arguments are passed through, e.g. `just test -k canonical -x`.

set positional-arguments

# The Python that runs mvx (scripts/setup.sh installs into the same one).
python := env_var_or_default("PYTHON", "python3")

# List the recipes.
default:
    @just --list

# Install Debian packages (i386/arm64 multiarch, cross compiler, qemu-user), Python deps and just.
setup:
    bash scripts/setup.sh

# Check what mvx needs of this machine, one line each; exit 1 if the default run lacks something (`just doctor --json`).
doctor *args:
    {{python}} -m mvx doctor "$@"

# Build the C test variants for x86_64/i386/aarch64 and fetch Debian's lighttpd and nginx for each ISA.
variants:
    bash scripts/build_variants.sh
    bash scripts/fetch_lighttpd.sh
    bash scripts/fetch_nginx.sh

# Run the test suite.
test *args: setup variants
    {{python}} -m pytest -q tests "$@"

# Run the syscall corpus (tests/corpus/*.c) natively and under mvx in each mode and direction: a table (`just corpus -k files --modes hybrid --json out.json`).
corpus *args: setup variants
    {{python}} -m mvx.corpus "$@"

# Run the demonstration of what works today (python3 -m mvx.demo; under a minute).
demo: setup variants
    {{python}} -m mvx.demo

# epoll_server and lighttpd natively, under mvx in each mode and under strace, interleaved, plus the
# interception micro-benchmark -> docs/benchmarks.{md,json,png}; under 10 minutes (--quick: about one).
# Run the A/B overhead benchmark (`just bench --help` for the options).
bench *args: setup variants
    {{python}} -m mvx bench --out docs/benchmarks "$@"

# Fuzz the decoders of what peers and variants send (tests/test_fuzz.py; the suite runs 300 examples each).
fuzz examples="20000": setup
    MVX_FUZZ_EXAMPLES={{examples}} {{python}} -m pytest -q tests/test_fuzz.py

# Measure the cost of each syscall-interception mechanism.
bench-intercept *args: setup
    {{python}} -m mvx.bench.intercept "$@"

# Lint the Python code.
lint:
    {{python}} -m ruff check mvx tests scripts

# Regenerate mvx/isa/archdata/*.py from the kernel headers and compilers, then
# mvx/mechanics/native/mvx_tables.h and the golden vectors (tests/golden/) from them; `just regen --check`
# only fails (one line naming the stale file) if any would change.
regen *args:
    {{python}} scripts/gen_archdata.py "$@"
    {{python}} scripts/gen_ctables.py "$@"
    {{python}} scripts/gen_golden.py "$@"

# The exploit suite (tests/exploits/): each exploit natively, then under mvx in every mode with each ISA
# leading; prints the table (`just exploits --short`: hybrid only; `--out docs/security.md` rewrites its table).
exploits *args: setup variants
    {{python}} -m tests.exploits "$@"

# The soak: 1,000,000 mixed lighttpd requests through an x86_64 leader and an i386 follower, each monitor's
# RSS sampled between rounds -> docs/soak.{md,json} (`just soak --requests 100000` for a shorter one).
soak *args: setup variants
    {{python}} -m mvx.bench.soak --out docs/soak "$@"

# The lighttpd tests with a mixed load of 100,000 requests per mode and ISA order (the suite uses 20,000).
soak-lighttpd *args: setup variants
    MVX_LIGHTTPD_REQUESTS=100000 {{python}} -m pytest -q tests/test_lighttpd.py "$@"

# The README's two commands on a fresh Debian 12 root made with mmdebstrap (needs root and a Debian
# mirror), timed, appended to docs/fresh.md; `--skew`: a native library ahead of the foreign indexes first.
fresh *args:
    bash scripts/fresh.sh "$@"

# Build the arm64 test node (Debian arm64 guest for qemu-system-aarch64, cached in build/arm64-node/).
arm64-node:
    bash scripts/arm64_node.sh build

# Run a command in the arm64 guest (repo shared at the same path), e.g. `just arm64 uname -m`
# or `just arm64 --fwd 8080:80 --timeout 600 -- python3 -m pytest -q tests`.
arm64 *args:
    bash scripts/arm64_node.sh run "$@"

# Every aarch64 test against the arm64 node (built first if needed; tests/test_arm64.py: two-node
# runs both ways with epoll_server and lighttpd, divergences, aarch64 injection in every mode).
# `just test` runs only its reduced subset (marked arm64_ci).
test-arm64 *args: setup variants arm64-node
    {{python}} -m pytest -q tests/test_arm64.py --arm64-full "$@"
