"""Typed YAML configs: one dataclass per stage, YAML keys equal field names.

``load_config(MyConfig, "configs/x.yaml", ["--lr", "1e-5", "grpo.beta=0.04"])`` reads the file,
applies command-line overrides (values parsed as YAML scalars) and builds the dataclass. Unknown
keys raise ``ConfigError`` naming the key and the file, so a typo never silently becomes a default.
Fields whose type is ``dict`` take nested mappings (e.g. the ``grpo:`` block handed to
``trl.GRPOConfig``, which does its own validation); dotted overrides reach into them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """Turn ``["--a.b", "1", "c=x", "--flag"]`` into ``{"a.b": 1, "c": "x", "flag": True}``."""
    out: dict[str, Any] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        key = item[2:] if item.startswith("--") else item
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif item.startswith("--") and i + 1 < len(items) and not items[i + 1].startswith("--"):
            raw = items[i + 1]
            i += 2
        elif item.startswith("--"):
            raw = "true"
            i += 1
        else:
            raise ConfigError(f"override {item!r} is not of the form --key value or key=value")
        key = key.replace("-", "_")
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        out[key] = yaml_value(raw)
    return out


def yaml_value(raw: str) -> Any:
    """A command-line value as YAML reads it (``"256"`` -> 256, ``"null"`` -> None), the empty
    string staying ``""``: the one rule for overrides and generated flags."""
    return yaml.safe_load(raw) if raw != "" else ""


def nested(value: Any, cls: type[T], source: str) -> T:
    """A nested config block given in code as a mapping (``reranker={"max_length": 256}``), built and
    checked as its YAML form would be (``from_dict``); an instance is returned unchanged."""
    return value if isinstance(value, cls) else from_dict(cls, value, source)


def _apply_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``data`` with ``overrides`` (``["a.b=1", "--c", "x"]`` or ``{"a.b": 1}``) set in place;
    dotted keys reach nested blocks, which are created when missing."""
    if overrides:
        pairs = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        for key, value in pairs.items():
            _apply_dotted(data, key, value)
    return data


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    """Check/convert one value against a field annotation (simple types only)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):  # nested block: a mapping, or the type's string short form
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and hasattr(tp, "from_string"):
            try:
                return tp.from_string(value)
            except ValueError as err:
                raise ConfigError(f"{source}: field {name!r}: {err}") from None
        if isinstance(value, dict):
            return from_dict(tp, value, f"{source}:{name}")
        raise ConfigError(f"{source}: field {name!r} must be a mapping of {tp.__name__} fields, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{source}: field {name!r} cannot be {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: field {name!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        items = [_coerce(f"{name}[{i}]", v, inner, source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: field {name!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: field {name!r} must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-5 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: field {name!r} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: field {name!r} must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: field {name!r} must be a string, got {value!r}")
    return value


def _over_default(f: dataclasses.Field, value: Any, tp: Any) -> Any:
    """A nested block's mapping laid over the field's default instance: the keys it names change,
    the defaults the field sets (``RerankerOptions(max_length=512, batch_size=8)``) stay."""
    if not (isinstance(value, dict) and dataclasses.is_dataclass(tp)):
        return value
    factory = f.default_factory  # type: ignore[misc]
    default = factory() if factory is not dataclasses.MISSING else f.default
    if not isinstance(default, tp):
        return value
    return {**{g.name: getattr(default, g.name) for g in dataclasses.fields(default) if g.init}, **value}


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        nested = {f"{name}.{sub.name}" for name in fields if dataclasses.is_dataclass(hints[name])
                  for sub in dataclasses.fields(hints[name])}
        moved = [key for key in nested if key.split(".", 1)[1] in unknown]
        hint = f" (did you mean {', '.join(sorted(moved))}?)" if moved else ""
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}{hint}"
        )
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        kwargs[key] = _coerce(key, _over_default(fields[key], value, tp), tp, source)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"{source}: missing required key(s) {missing} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:  # a field's own check: say which file or block it came from
        raise ConfigError(f"{source}: {err}") from None


def option(default: Any, help: str) -> Any:  # noqa: A002 - argparse's name for it
    """A config field with its default and its one-line ``help``, the one place a key is explained
    (``--help`` shows it: ``describe_fields``). A list, dict or dataclass default is copied for
    each instance (``option([0, 100], "BM25 ranks [start, end)")``); ``dataclasses.MISSING``
    makes the key required."""
    if not help or not help.strip():
        raise ValueError("option: every config field needs its help text")
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check_positive(name: str, value: Any, optional: bool = False, error: type[Exception] = ValueError,
                   where: str = "") -> Any:
    """``value`` if it is a positive integer (or None when ``optional``), else ``error`` naming the field."""
    if optional and value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{where}{name} must be a positive integer{' or null' if optional else ''}, got {value!r}")
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of YAML file ``path`` (empty file: ``{}``); errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] | dict[str, Any] | None = None,
) -> T:
    """Read YAML ``path`` (optional), apply ``overrides`` and build ``cls``."""
    data = apply_overrides(read_yaml(path) if path is not None else {}, overrides)
    return from_dict(cls, data, str(path) if path is not None else "config")


def config_from_argv(cls: type[T], argv: Sequence[str]) -> T:
    """``cls`` from a script's arguments: an optional leading ``--config FILE``, then overrides;
    ``--help`` prints every key with its default and description, and exits."""
    args = list(argv)
    if "--help" in args or "-h" in args:
        print(f"keys of {cls.__name__} (--key value or key=value; --config FILE first for a YAML):")
        for key, default, description in describe_fields(cls):
            print(f"  {key} = {default}" + (f"\n      {description}" if description else ""))
        raise SystemExit(0)
    path = None
    if args[:1] == ["--config"]:
        if len(args) < 2:
            raise ConfigError("--config needs a file")
        path, args = args[1], args[2:]
    return load_config(cls, path, args)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for metadata and logs)."""
    return dataclasses.asdict(cfg)


BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "null"})


class BoolFlag(argparse.Action):
    """A boolean field's flag: ``--normalize`` (true) or ``--normalize false``; see ``bare_bool_flags``."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)


def bare_bool_flags(argv: Sequence[str], actions: Iterable[argparse.Action]) -> list[str]:
    """``argv`` with ``true`` written after each bare boolean flag (``BoolFlag``) that is followed
    by something other than a boolean word, so ``--normalize max_batch_size=8`` keeps the override
    as an override instead of reading it as the flag's value. ``actions``: every command's."""
    flags: set[str] = set()
    others: set[str] = set()
    for action in actions:
        (flags if isinstance(action, BoolFlag) else others).update(action.option_strings)
    flags -= others  # a flag that takes a value in some command is left to argparse
    out: list[str] = []
    for i, token in enumerate(argv):
        out.append(token)
        following = argv[i + 1] if i + 1 < len(argv) else None
        if token in flags and (following is None or following.lower() not in BOOL_WORDS):
            out.append("true")
    return out


def add_config_flags(parser: Any, cls: type, dest_prefix: str, skip: Sequence[str] = ()) -> None:
    """One ``--flag`` per field of config dataclass ``cls`` (``--max-length`` and ``--max_length``),
    its help and default from ``describe_fields``; absent flags stay unset and values stay strings
    (YAML-typed by ``flag_values``), so the dataclass keeps its defaults and does the checking. A
    boolean field's bare flag (``--normalize``) means true. The one way every command builds flags."""
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, default, description in describe_fields(cls):
        if key in skip:
            continue
        flags = ([f"--{key.replace('_', '-')}"] if "_" in key else []) + [f"--{key}"]
        text = description if "(default" in description else f"{description} (default: {default})".strip()
        kind = {"metavar": "true|false", "nargs": "?", "const": "true", "action": BoolFlag} \
            if types[key] in (bool, "bool", "bool | None") else {"metavar": "VALUE"}
        parser.add_argument(*flags, dest=dest_prefix + key, default=argparse.SUPPRESS, help=text.replace("%", "%%"),
                            **kind)


def flag_values(args: Any, dest_prefix: str) -> dict[str, Any]:
    """The fields ``add_config_flags`` flags were given for, YAML-typed: ``{"max_length": 256}``."""
    return {key[len(dest_prefix):]: yaml_value(value) if isinstance(value, str) else value
            for key, value in vars(args).items() if key.startswith(dest_prefix)}


def describe_fields(cls: type) -> list[tuple[str, str, str]]:
    """``(key, default, help)`` for every field of a config dataclass, in order; the help is the one
    its declaration gives (``option(default, help)``, i.e. ``metadata["help"]``), "" without one."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        if dataclasses.is_dataclass(default):
            default = dataclasses.asdict(default)
        elif isinstance(default, list):
            default = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in default]
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        rows.append((f.name, shown, f.metadata.get("help", "")))
    return rows
