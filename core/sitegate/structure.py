"""Turning untrusted mappings into typed attrs values, with errors that say where.

One cattrs converter for the whole core and every integration's config
class: unknown keys are refused, every problem is reported (not only the
first), and each carries its path inside the document (`entries[2].config.port`).
Adds the small types site files need: durations such as ``500ms`` or ``1m``.
"""

from __future__ import annotations

import collections.abc
import re
import typing
from typing import Any, Callable, TypeVar

import attrs
import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.gen import make_dict_structure_fn
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from .errors import ConfigError, Issue

T = TypeVar("T")


class Duration(float):
    """Seconds, written in files as a number or with a unit: 250ms, 5s, 1m, 2h, 1d."""

    def __repr__(self) -> str:
        return f"Duration({float(self)!r})"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> Duration:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 500ms, 5s or 1m, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return Duration(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return Duration(float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"expected a duration such as 500ms, 5s or 1m, got {value!r}")


def _strict(kind: type) -> Callable[[Any, type], Any]:
    # cattrs would turn "abc" into int('abc') errors and "1" into 1 silently; a site
    # file that says port: "1883" is probably fine, but port: yes is a mistake.
    def structure(value: Any, _: type) -> Any:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if kind is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return structure


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (int, float, str, bool):
        conv.register_structure_hook(kind, _strict(kind))
    conv.register_structure_hook(Duration, lambda v, _: parse_duration(v))
    conv.register_unstructure_hook(Duration, float)
    return conv


def describe(value: Any) -> str:
    """A value as a message names it: `nothing`, `text 'x'`, `list [1, 2]`, `mapping {...}`."""
    if value is None:
        return "nothing"
    kind = {str: "text", bool: "boolean", int: "integer", float: "number", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 60 else shown[:57] + '...'}"


_LISTS = {list, typing.List, collections.abc.Sequence, collections.abc.MutableSequence}
_MAPPINGS = {dict, typing.Dict, collections.abc.Mapping, collections.abc.MutableMapping}


def _add_shape_checks(conv: cattrs.Converter) -> None:
    """Refuse values of the wrong shape in words an integrator understands.

    Left alone, cattrs turns the text "press/*" into ['p', 'r', ...] and reports a
    list where a mapping belongs as an AttributeError; these say "expected a list,
    got text 'press/*'". Literal types name their choices.
    """

    def is_list(kind: Any) -> bool:
        return typing.get_origin(kind) in _LISTS or kind in _LISTS

    def is_mapping(kind: Any) -> bool:
        return typing.get_origin(kind) in _MAPPINGS or kind in _MAPPINGS

    def list_hook(kind: Any):
        base = list_structure_factory(kind, conv)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected a list, got {describe(value)}")
            return base(value, t)
        return structure

    def mapping_hook(kind: Any):
        base = mapping_structure_factory(kind, conv)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {describe(value)}")
            return base(value, t)
        return structure

    def attrs_hook(cls: type):
        base = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True,
                                      _cattrs_detailed_validation=True)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {describe(value)}")
            return base(value, t)
        return structure

    def literal(value: Any, kind: Any) -> Any:
        choices = typing.get_args(kind)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {value!r}")

    conv.register_structure_hook_factory(is_list, list_hook)
    conv.register_structure_hook_factory(is_mapping, mapping_hook)
    conv.register_structure_hook_factory(attrs.has, attrs_hook)
    conv.register_structure_hook_func(lambda t: typing.get_origin(t) is typing.Literal, literal)


converter = make_converter()
_add_shape_checks(converter)


def _issue_from(exc: BaseException, path: str, file: str | None,
                locate: Callable[[str], int | None] | None) -> list[Issue]:
    issues: list[Issue] = []
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = ""
        cl = getattr(exc, "cl", None)
        if cl is not None and attrs.has(cl):
            allowed = "; allowed keys: " + ", ".join(a.alias or a.name for a in attrs.fields(cl))
        for key in sorted(exc.extra_fields):
            p = f"{path}.{key}" if path else key
            issues.append(Issue(f"unknown key {key!r}{allowed}", file, locate(p) if locate else None, p))
        return issues
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                name = getattr(note, "name", None)
                index = getattr(note, "index", None)
                if name is not None:
                    sub_path = f"{path}.{name}" if path else str(name)
                elif index is not None:
                    sub_path = f"{path}[{index!r}]" if isinstance(index, str) else f"{path}[{index}]"
            issues.extend(_issue_from(sub, sub_path, file, locate))
        return issues
    if isinstance(exc, KeyError):
        name = exc.args[0] if exc.args else "?"
        for suffix in (f".{name}", str(name)):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        return [Issue(f"required key {name!r} is missing", file, locate(path) if locate else None, path)]
    msg = str(exc)
    if isinstance(exc, TypeError) and "missing" in msg and "required" in msg:
        m = re.search(r"'([^']+)'", msg)
        msg = f"required key {m.group(1)!r} is missing" if m else msg
    elif type(exc).__name__ == "StructureHandlerNotFoundError":
        msg = f"cannot be read into {msg}"
    elif not isinstance(exc, (ValueError, ConfigError)):
        msg = f"{type(exc).__name__}: {msg}"
    return [Issue(msg, file, locate(path) if locate else None, path)]


def _missing_keys(data: Any, cls: type, path: str, file: str | None,
                  locate: Callable[[str], int | None] | None) -> list[Issue]:
    # cattrs reports a missing key as a bare KeyError without the class; name it here.
    if not (attrs.has(cls) and isinstance(data, dict)):
        return []
    out = []
    for a in attrs.fields(cls):
        key = a.alias or a.name
        if a.default is attrs.NOTHING and key not in data:
            out.append(Issue(f"required key {key!r} is missing", file, locate(path) if locate else None, path))
    return out


def structure(data: Any, cls: type[T], *, path: str = "", file: str | None = None,
              locate: Callable[[str], int | None] | None = None) -> T:
    """Structure ``data`` into ``cls`` or raise ConfigError listing every problem with its place."""
    if attrs.has(cls) and not isinstance(data, dict):
        got = "nothing" if data is None else f"{type(data).__name__} {data!r}"
        raise ConfigError(Issue(f"expected a mapping, got {got}", file, locate(path) if locate else None, path))
    try:
        return converter.structure(data, cls)
    except ClassValidationError as exc:
        issues = _issue_from(exc, path, file, locate)
    except ForbiddenExtraKeysError as exc:
        issues = _issue_from(exc, path, file, locate)
    except (ValueError, TypeError, KeyError) as exc:
        issues = _missing_keys(data, cls, path, file, locate) or _issue_from(exc, path, file, locate)
    except ConfigError as exc:
        raise ConfigError([attrs.evolve(i, path=f"{path}.{i.path}" if path and i.path else (i.path or path),
                                        file=i.file or file) for i in exc.issues]) from None
    # Replace the generic KeyError issues by named ones where we can.
    fixed: list[Issue] = []
    for issue in issues:
        if issue.message.startswith("required key '?'"):
            continue
        fixed.append(issue)
    raise ConfigError(fixed or issues)
