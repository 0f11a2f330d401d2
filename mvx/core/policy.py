"""Synchronisation policies: which canonical syscalls are synced, and in which class.

Policies are data (mvx/core/policies/*.toml); code asks a Policy, never a chain of ifs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from mvx import MvxError

POLICY_DIR = Path(__file__).resolve().parent / "policies"
CLASSES = ("replicated", "retval_only", "checked_output", "local", "fd_creating", "exit", "sensitive")


# what a class becomes on an fd of the variant's own world: every variant runs the call
WORLD_CLASS = {"replicated": "local", "retval_only": "local", "checked_output": "sensitive"}


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    classes: dict[str, str]  # canonical syscall -> class
    # calls that run in every variant when their fd is of the variant's own world (FdShadow.world:
    # files it opened, pipes and socketpairs it made): inputs read locally, results compared;
    # outputs checked (the leader waits for that under --lockstep sensitive) and performed in each
    in_world: frozenset[str] = frozenset()

    def synced(self) -> set[str]:
        """Every canonical syscall the monitors must see."""
        return set(self.classes)

    def class_of(self, name: str, in_world: bool = False) -> str | None:
        """The class of a call; `in_world`: its fd is of the variant's own world."""
        cls = self.classes.get(name)
        if in_world and name in self.in_world:
            return WORLD_CLASS.get(cls, cls)
        return cls

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
    in_world = frozenset(data.get("in_world", []))
    if in_world - set(classes):
        raise MvxError(f"policy {name}: in_world names calls in no class: {sorted(in_world - set(classes))}")
    unknown = set(data) - set(CLASSES) - {"name", "description", "in_world"}
    if unknown:
        raise MvxError(f"policy {name}: unknown keys {sorted(unknown)}")
    return Policy(name=data.get("name", name), description=data.get("description", ""), classes=classes,
                  in_world=in_world)
