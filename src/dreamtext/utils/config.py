"""Configs are dataclasses: saved as JSON in each workspace and rebuilt from it exactly.

A setting that is one of several parts (a field's encoding: a hash grid or tri-planes) is a union of
dataclasses, each with a `kind` field whose default names it: `field.encoding.kind` chooses the part (set
from a preset, a command line or a saved config), and the other keys under `field.encoding` are that
part's own settings.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from ..errors import DreamtextError

T = TypeVar("T")


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def kinds(tp: Any) -> dict[str, type]:
    """{kind: dataclass} of a union of dataclasses that each name their `kind` (empty for any other type)."""
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return {}
    members = {}
    for option in map(_strip_annotated, typing.get_args(tp)):
        kind = next((f.default for f in dataclasses.fields(option) if f.name == "kind"), None) if dataclasses.is_dataclass(option) else None
        if isinstance(kind, str):
            members[kind] = option
    return members


def _flag_name(item: dataclasses.Field, hint) -> tuple[str, object]:
    """A field's flag name (its own, or the one tyro.conf.arg(name=...) gives it: "" adds nothing to its
    fields' flags) and its type without annotations."""
    name = item.name.replace("_", "-")
    while typing.get_origin(hint) is typing.Annotated:
        hint, *marks = typing.get_args(hint)
        for mark in marks:
            if isinstance(getattr(mark, "name", None), str):  # tyro.conf.arg(name=...)
                name = mark.name
    return name, hint


def _optional_part(hint):
    """The dataclass of an optional nested part (`TextTo3DConfig | None`, which the command's defaults fill), else
    `hint` as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]):
            return options[0]
    return hint


def config_flags(cls, flag_prefix: str = "", path_prefix: str = ""):
    """(flag, dotted path, type) of every field of dataclass `cls`, nested ones included: the flag as the command
    line spells it (tyro's; a part named "" adds nothing to its fields' flags), the path as `set_dotted` takes it."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for item in dataclasses.fields(cls):
        name, kind = _flag_name(item, hints[item.name])
        flag = f"{flag_prefix}{name}"
        yield flag, f"{path_prefix}{item.name}", kind
        kind = _optional_part(kind)
        if dataclasses.is_dataclass(kind):
            yield from config_flags(kind, f"{flag}." if name else flag_prefix, f"{path_prefix}{item.name}.")


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls, include_extras=True)[name]


def _build(tp: Any, value: Any) -> Any:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        members = kinds(tp)
        if isinstance(value, dict) and value.get("kind") in members:
            return config_from_dict(members[value["kind"]], value)
        options = [a for a in map(_strip_annotated, typing.get_args(tp)) if a is not type(None)]
        for option in options:  # a config saved before its part had a kind: the first part that has its keys
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return config_from_dict(option, value)
        return _build(options[0], value) if len(options) == 1 else value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value)) if args else tuple(value)
    if origin is list and isinstance(value, list):
        (arg,) = typing.get_args(tp) or (Any,)
        return [_build(arg, v) for v in value]
    return value


def config_from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a (nested) dataclass config from `config_to_dict`'s output. Unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    return cls(**{name: _build(hints[name], value) for name, value in data.items()})


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves of config dict `a` whose values differ in `b`."""
    keys = []
    for key in a:
        if isinstance(a[key], dict) and isinstance(b.get(key), dict):
            keys += differing_keys(a[key], b[key], f"{prefix}{key}.")
        elif a[key] != b.get(key):
            keys.append(prefix + key)
    return keys


def get_dotted(config: Any, key: str) -> Any:
    """The value of a dotted key ("renderer.max_samples_per_chunk") of a nested dataclass config."""
    for part in key.split("."):
        config = getattr(config, part)
    return config


def set_dotted(config: T, key: str, value: Any) -> T:
    """A copy of a (nested, possibly frozen) dataclass config with one dotted key set. Setting the `kind` of a
    part (`field.encoding.kind`) to another part's name puts that part, with its defaults, in its place."""
    head, _, rest = key.partition(".")
    if not any(f.name == head for f in dataclasses.fields(config)):
        raise AttributeError(f"{type(config).__name__} has no setting {head!r}")
    if rest == "kind":
        members = kinds(_field_type(type(config), head))
        if members:
            if value not in members:
                raise AttributeError(f"{head}.kind must be one of {', '.join(members)}, got {value!r}")
            current = getattr(config, head)
            return config if getattr(current, "kind", None) == value else dataclasses.replace(config, **{head: members[value]()})
    if not rest and isinstance(value, (list, dict)):  # as JSON gives it (a job file, --set): a tuple, a nested config
        value = _build(_field_type(type(config), head), value)
    return dataclasses.replace(config, **{head: set_dotted(getattr(config, head), rest, value) if rest else value})


def changed_from(config: T, reference: T, base: T) -> T:
    """`base` with every leaf where `config` differs from `reference` taken from `config`: a command line's
    explicit flags (what differs from the defaults) applied to a saved config."""
    result = base
    for key in differing_keys(config_to_dict(config), config_to_dict(reference)):
        result = set_dotted(result, key, get_dotted(config, key))
    return result


def parse_settings(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs (`--set`) as dotted settings; a VALUE is JSON where it parses (numbers, true, lists),
    else text."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DreamtextError(f"--set {pair!r}: write KEY=VALUE, e.g. sds.guidance_form=perp_neg")
        name = key.strip().lstrip("-").replace("-", "_")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    return settings
