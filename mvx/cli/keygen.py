"""`mvx keygen DIR`: key material for a leader-follower channel over the network (mutual TLS).

A private CA signs one certificate per role (CN mvx-leader, mvx-follower); each node trusts only
that CA and checks the role of its peer. The CA key stays in DIR so more nodes can be signed later.
Made with the `openssl` command (EC P-256, valid 10 years)."""

from __future__ import annotations

import argparse
import secrets
import subprocess
import tempfile
from pathlib import Path

from mvx import MvxError

DAYS = "3650"
ROLES = ("leader", "follower")

# Our own config, so that the system's openssl.cnf cannot add or change extensions.
_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[node_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# Both purposes on both roles: a node's role is its CN, checked by mvx itself.
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(step: str, *args: str | Path) -> None:
    try:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, text=True, umask=0o077)
    except FileNotFoundError:
        raise MvxError("openssl not found: apt-get install openssl") from None
    except subprocess.CalledProcessError as exc:
        lines = exc.stderr.strip().splitlines() or [f"exit status {exc.returncode}"]
        raise MvxError(f"openssl failed to {step}: {lines[-1]}") from None


def _new_key(path: Path) -> None:
    _openssl(f"make {path.name}", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    path.chmod(0o600)  # also when --force rewrote an existing file, which keeps its old mode


def make_keys(directory: Path, force: bool = False) -> list[Path]:
    """Write ca.pem/ca.key and <role>.pem/<role>.key for both roles into `directory`."""
    if directory.exists() and not directory.is_dir():
        raise MvxError(f"{directory} is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise MvxError(f"{directory} is not empty; use --force to write new keys into it")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "openssl.cnf")
        config.write_text(_CONFIG)
        ca_pem, ca_key = directory / "ca.pem", directory / "ca.key"
        _new_key(ca_key)
        _openssl("make ca.pem", "req", "-new", "-x509", "-config", config, "-extensions", "ca_ext",
                 "-key", ca_key, "-subj", "/CN=mvx-ca", "-days", DAYS, "-sha256", "-out", ca_pem)
        made += [ca_pem, ca_key]
        for role in ROLES:
            pem, key, csr = directory / f"{role}.pem", directory / f"{role}.key", Path(tmp, f"{role}.csr")
            _new_key(key)
            _openssl(f"make {role}.pem", "req", "-new", "-config", config, "-key", key,
                     "-subj", f"/CN=mvx-{role}", "-out", csr)
            _openssl(f"make {role}.pem", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                     "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-sha256",
                     "-extfile", config, "-extensions", "node_ext", "-out", pem)
            made += [pem, key]
    for path in made:
        if path.suffix == ".pem":
            path.chmod(0o644)
    return made


def _handler(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    make_keys(d, force=args.force)
    print(f"mvx keygen: made in {d}/:\n"
          f"  ca.pem                     the CA certificate (every node)\n"
          f"  ca.key                     the CA key (keep it safe and off the nodes; it signs more nodes)\n"
          f"  leader.pem, leader.key     the leader's certificate and key\n"
          f"  follower.pem, follower.key a follower's certificate and key\n"
          f"The leader node needs ca.pem, leader.pem and leader.key; each follower node needs ca.pem, "
          f"follower.pem and follower.key. Give each node its directory with --keys DIR.")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "keygen", help="make TLS keys for a leader-follower channel over the network",
        description="Make a private CA and, signed by it, a leader and a follower certificate and key "
        "(EC P-256, valid 10 years) in DIR, with the openssl command. Keys are mode 0600.")
    p.add_argument("dir", metavar="DIR", help="where to write the keys (created if missing; must be empty)")
    p.add_argument("--force", action="store_true", help="write into DIR even if it is not empty")
    p.set_defaults(handler=_handler)
