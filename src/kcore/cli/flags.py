"""Command-line flags parsed the way Go's `flag`/pflag packages parse them.

Operators of etcd and Kubernetes type `--x=false`, `-name n1`, durations such
as `40s` or `1m30s`, and set etcd flags from `ETCD_*` environment variables.
A `FlagSet` declares the flags of one command and parses argv into a plain
namespace plus the positional arguments.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kcore.durations import DurationError as FlagError
from kcore.durations import parse_duration


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    t = text.strip()
    if t in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if t in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise FlagError(f'invalid boolean value "{text}"')


def parse_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str, "int": int, "float": float, "bool": parse_bool,
    "duration": parse_duration, "list": parse_list,
}


@dataclass
class Flag:
    name: str
    kind: str
    default: Any
    help: str
    repeated: bool = False  # a list flag given several times accumulates

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


@dataclass
class FlagSet:
    """Flags of one command. `env_prefix` ('ETCD') lets ETCD_DATA_DIR set --data-dir."""

    prog: str
    description: str = ""
    env_prefix: str | None = None
    flags: dict[str, Flag] = field(default_factory=dict)
    interspersed: bool = True

    def add(self, name: str, kind: str = "str", default: Any = None, help: str = "",
            repeated: bool = False) -> None:
        if kind not in _PARSERS:
            raise ValueError(kind)
        self.flags[name] = Flag(name, kind, default, help, repeated)

    def usage(self) -> str:
        lines = [f"Usage: {self.prog} [flags]", ""]
        if self.description:
            lines += [self.description, ""]
        for f in sorted(self.flags.values(), key=lambda f: f.name):
            d = "" if f.default in (None, "", []) else f" (default {_show(f.default, f.kind)})"
            lines.append(f"  --{f.name} {'' if f.kind == 'bool' else f.kind}".rstrip())
            lines.append(f"        {f.help}{d}")
        return "\n".join(lines)

    def _convert(self, f: Flag, raw: str, source: str) -> Any:
        try:
            return _PARSERS[f.kind](raw)
        except (ValueError, FlagError) as e:
            msg = str(e) if isinstance(e, FlagError) else f'invalid value "{raw}"'
            raise FlagError(f"invalid argument {raw!r} for {source}: {msg}") from None

    def parse(self, argv: list[str], environ: dict[str, str] | None = None
              ) -> tuple[SimpleNamespace, list[str]]:
        values: dict[str, Any] = {f.dest: _copy(f.default) for f in self.flags.values()}
        given: set[str] = set()
        if self.env_prefix:
            env = os.environ if environ is None else environ
            for f in self.flags.values():
                key = f"{self.env_prefix}_{f.dest.upper()}"
                if key in env:
                    values[f.dest] = self._convert(f, env[key], key)
        args: list[str] = []
        i = 0
        while i < len(argv):
            a = argv[i]
            if a == "--":
                args.extend(argv[i + 1:])
                break
            if not a.startswith("-") or a == "-":
                args.append(a)
                if not self.interspersed:
                    args.extend(argv[i + 1:])
                    break
                i += 1
                continue
            body = a.lstrip("-")
            name, eq, raw = body.partition("=")
            if name in ("h", "help"):
                print(self.usage())
                raise SystemExit(0)
            f = self.flags.get(name)
            if f is None:
                raise FlagError(f"unknown flag: --{name}")
            if f.kind == "bool":
                val = self._convert(f, raw, f"--{name}") if eq else True
            else:
                if not eq:
                    if i + 1 >= len(argv):
                        raise FlagError(f"flag needs an argument: --{name}")
                    i += 1
                    raw = argv[i]
                val = self._convert(f, raw, f"--{name}")
            if f.kind == "list" and f.repeated and f.dest in given:
                values[f.dest] = values[f.dest] + val
            else:
                values[f.dest] = val
            given.add(f.dest)
            i += 1
        ns = SimpleNamespace(**values)
        ns._given = given
        return ns, args


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v


def _show(v: Any, kind: str) -> str:
    if kind == "list":
        return ",".join(v)
    if kind == "bool":
        return "true" if v else "false"
    return str(v)


def run_flags(fs: FlagSet, argv: list[str]) -> tuple[SimpleNamespace, list[str]]:
    """Parse or exit 2 with Go's wording, as a Go binary does on a bad flag."""
    try:
        return fs.parse(argv)
    except FlagError as e:
        print(f"{fs.prog}: {e}", file=sys.stderr)
        print(f"Run '{fs.prog} --help' for usage.", file=sys.stderr)
        raise SystemExit(2) from None
