"""Synchronisation policies: which canonical syscalls are synced, and in which class.

Policies are data (mvx/core/policies/*.toml); code asks a Policy, never a chain of ifs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from mvx import MvxError

POLICY_DIR = Path(__file__).resolve().parent / "policies"
CLASSES = ("replicated", "retval_only", "checked_output", "local", "fd_creating", "exit", "sensitive")


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    classes: dict[str, str]  # canonical syscall -> class
    file_local: frozenset[str] = frozenset()  # run locally when their fd is a regular file or directory

    def synced(self) -> set[str]:
        """Every canonical syscall the monitors must see."""
        return set(self.classes)

    def class_of(self, name: str, fd_kind: str | None = None) -> str | None:
        """The class of a call; `fd_kind` (procinfo.FdKinds) of its fd where the policy cares."""
        if fd_kind in ("file", "dir") and name in self.file_local:
            return "local"
        return self.classes.get(name)

    def members(self, cls: str) -> set[str]:
        return {name for name, c in self.classes.items() if c == cls}


def available() -> list[str]:
    return sorted(p.stem for p in POLICY_DIR.glob("*.toml"))


def load(name: str) -> Policy:
    path = POLICY_DIR / f"{name}.toml"
    if not path.is_file():
        raise MvxError(f"unknown policy {name!r} (available: {', '.join(available())})")
    data = tomllib.loads(path.read_text())
    classes: dict[str, str] = {}
    for cls in CLASSES:
        for syscall in data.get(cls, []):
            if syscall in classes:
                raise MvxError(f"policy {name}: {syscall} is in both {classes[syscall]} and {cls}")
            classes[syscall] = cls
    file_local = frozenset(data.get("file_local", []))
    if file_local - set(classes):
        raise MvxError(f"policy {name}: file_local names calls in no class: {sorted(file_local - set(classes))}")
    unknown = set(data) - set(CLASSES) - {"name", "description", "file_local"}
    if unknown:
        raise MvxError(f"policy {name}: unknown keys {sorted(unknown)}")
    return Policy(name=data.get("name", name), description=data.get("description", ""), classes=classes,
                  file_local=file_local)
