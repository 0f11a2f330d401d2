"""`mvx keygen DIR`: key material for a leader-follower channel over the network (mutual TLS).

A private CA signs one certificate per role (CN mvx-leader, mvx-follower); each node trusts only
that CA and checks the role of its peer. The CA key stays in DIR so more nodes can be signed later.
Made with the `openssl` command (EC P-256, valid 10 years).

`mvx keygen --revoke ROLE DIR`: the role's certificate goes on the CA's revocation list (DIR/crl.pem,
made from DIR/revoked.txt, one line per certificate revoked), and the role gets a new key and
certificate. A node whose --keys DIR holds crl.pem refuses any peer whose certificate is on it."""

from __future__ import annotations

import argparse
import datetime
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


# `openssl ca`, only to sign the revocation list (its database is made afresh from revoked.txt)
_CA_CONFIG = """\
[ca]
default_ca = mvx
[mvx]
database = {db}
crlnumber = {number}
default_md = sha256
default_crl_days = 3650
"""


def _openssl_out(step: str, *args: str | Path) -> str:
    try:
        done = subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise MvxError("openssl not found: apt-get install openssl") from None
    except subprocess.CalledProcessError as exc:
        lines = exc.stderr.strip().splitlines() or [f"exit status {exc.returncode}"]
        raise MvxError(f"openssl failed to {step}: {lines[-1]}") from None
    return done.stdout


def _sign_node(directory: Path, role: str, config: Path, tmp: str) -> list[Path]:
    ca_pem, ca_key = directory / "ca.pem", directory / "ca.key"
    pem, key, csr = directory / f"{role}.pem", directory / f"{role}.key", Path(tmp, f"{role}.csr")
    _new_key(key)
    _openssl(f"make {role}.pem", "req", "-new", "-config", config, "-key", key, "-subj", f"/CN=mvx-{role}", "-out", csr)
    _openssl(f"make {role}.pem", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
             "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-sha256",
             "-extfile", config, "-extensions", "node_ext", "-out", pem)
    pem.chmod(0o644)
    return [pem, key]


def revoke(directory: Path, role: str) -> tuple[str, list[Path]]:
    """Put DIR/<role>.pem on the CA's revocation list (DIR/crl.pem) and give the role a new key and
    certificate. Returns the revoked serial (hex) and the files written."""
    if role not in ROLES:
        raise MvxError(f"--revoke {role!r}: a role is leader or follower")
    needed = [directory / n for n in ("ca.pem", "ca.key", f"{role}.pem")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise MvxError(f"{directory}: missing {', '.join(missing)} (made by `mvx keygen DIR`; the CA key signs the list)")
    pem = directory / f"{role}.pem"
    serial = _openssl_out(f"read {pem.name}", "x509", "-in", pem, "-noout", "-serial").strip().split("=", 1)[1]
    ends = _openssl_out(f"read {pem.name}", "x509", "-in", pem, "-noout", "-enddate").strip().split("=", 1)[1]
    expiry = datetime.datetime.strptime(ends, "%b %d %H:%M:%S %Y %Z").strftime("%y%m%d%H%M%SZ")
    now = datetime.datetime.now(datetime.UTC).strftime("%y%m%d%H%M%SZ")
    listed = directory / "revoked.txt"
    lines = listed.read_text().splitlines() if listed.exists() else []
    if not any(ln.split("\t")[0] == serial for ln in lines):
        lines.append(f"{serial}\t{expiry}\t{now}\t/CN=mvx-{role}")
    with tempfile.TemporaryDirectory() as tmp:
        db, number, config = Path(tmp, "index.txt"), Path(tmp, "crlnumber"), Path(tmp, "ca.cnf")
        db.write_text("".join(f"R\t{exp}\t{when}\t{ser}\tunknown\t{subj}\n"
                              for ser, exp, when, subj in (ln.split("\t") for ln in lines)))
        number.write_text(f"{len(lines):02X}\n")
        config.write_text(_CA_CONFIG.format(db=db, number=number))
        crl = directory / "crl.pem"
        _openssl("sign crl.pem", "ca", "-gencrl", "-batch", "-config", config, "-keyfile", directory / "ca.key",
                 "-cert", directory / "ca.pem", "-out", crl)
        crl.chmod(0o644)
        node_config = Path(tmp, "openssl.cnf")
        node_config.write_text(_CONFIG)
        made = _sign_node(directory, role, node_config, tmp)
    listed.write_text("".join(ln + "\n" for ln in lines))
    return serial, [crl, listed, *made]


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
            made += _sign_node(directory, role, config, tmp)
    for path in made:
        if path.suffix == ".pem":
            path.chmod(0o644)
    return made


def _handler(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    if args.revoke:
        serial, _ = revoke(d, args.revoke)
        print(f"mvx keygen: the {args.revoke} certificate with serial {serial} is revoked: {d}/crl.pem lists it "
              f"(and every one revoked before). Copy crl.pem into every node's --keys directory: a node with it "
              f"refuses that certificate. {d}/{args.revoke}.pem and {args.revoke}.key are new: give them to the "
              f"{args.revoke} node.")
        return 0
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
    p.add_argument("--revoke", metavar="ROLE", choices=ROLES,
                   help="revoke DIR's ROLE certificate (leader or follower): DIR/crl.pem lists it, and the role "
                   "gets a new key and certificate; nodes with crl.pem in their --keys DIR refuse the old one")
    p.set_defaults(handler=_handler)
