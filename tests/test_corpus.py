"""The syscall corpus (tests/corpus/*.c, built by scripts/build_variants.sh into build/corpus/) under
`mvx run`: one case per program x mode x direction, passing when mvx exits 0 and the leader's output
is the programs' native output (mvx/corpus.py; `python3 -m mvx.corpus` prints the same as a table).

KNOWN lists the cases that fail today, with the first divergence seen. They are strict xfails: when
a fix makes one pass it fails as XPASS, and its entry must go. The selected cases run two at a time
(one fixture for the session), each with its own timeout: about 2 minutes for all 108 on a quiet
2-core machine, 4-5 under a load of 6-11."""

from __future__ import annotations

import concurrent.futures

import pytest

from mvx import corpus

# Seconds per `mvx run`: natively each program takes well under one, under mvx 1-3 s on a quiet
# machine and up to ~8 s at a load of 11 on 2 cores. A case known to hang gets less (if a fix makes it
# pass but slowly, it only stays an xfail a little longer).
TIMEOUT = 30
TIMEOUT_KNOWN_HANG = 10

KNOWN: dict[tuple[str, str, str], str] = {}  # every case passes today


def _cases():
    for p in corpus.programs():
        for m in corpus.MODES:
            for d in corpus.DIRECTIONS:
                reason = KNOWN.get((p, m, d))
                marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
                yield pytest.param(p, m, d, id=f"{p}-{m}-{d}", marks=marks)


@pytest.fixture(scope="session")
def corpus_results(request) -> dict:
    """Run every selected case once, two at a time; a missing build fails (never skips)."""
    wanted = [tuple(item.callspec.params[k] for k in ("program", "mode", "direction"))
              for item in request.session.items
              if item.originalname == "test_corpus" and hasattr(item, "callspec")]
    try:
        for p in {w[0] for w in wanted}:
            for arch in ("x86_64", "i386"):
                corpus.binary(arch, p)
    except FileNotFoundError as e:
        pytest.fail(str(e))
    refs = {p: corpus.reference(p) for p in {w[0] for w in wanted}}

    def one(case):
        p, m, d = case
        ref, why = refs[p]
        if ref is None:
            return corpus.Result(p, m, d, f"error {why}")
        hangs = KNOWN.get(case, "").endswith("(timeout)")
        return corpus.run_case(p, m, d, ref, timeout=TIMEOUT_KNOWN_HANG if hangs else TIMEOUT)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return {(r.program, r.mode, r.direction): r for r in pool.map(one, wanted)}


def test_known_entries_name_real_cases():
    cases = {(p, m, d) for p in corpus.programs() for m in corpus.MODES for d in corpus.DIRECTIONS}
    assert not set(KNOWN) - cases


@pytest.mark.parametrize("program,mode,direction", list(_cases()))
def test_corpus(program, mode, direction, corpus_results):
    r = corpus_results[(program, mode, direction)]
    assert r.status == "pass", f"{r.status}: {r.detail}"
