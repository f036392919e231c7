"""Settings declared once: each setting is one dataclass field carrying its flag, environment variable, default,
validation and help text.

A subsystem declares its own *section* (a frozen dataclass deriving from :class:`Section`, with fields made by
:func:`option`) and reads it directly; the serve command composes the sections (``roles/settings.py``), and the
command line, the environment variables, the README's configuration table and the validation are all derived
from these declarations — nothing is copied by hand from one to the other.

A value is checked when its section is built, and a failure names the flag: ``--port must be between 1 and
65535, got 0``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

OPTION = "modelyard.option"

Check = Callable[[Any], str | None]  # the problem with a value, in words, or None when it is fine


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Option:
    flag: str  # "--ctx-size"
    env: str  # "MODELYARD_CTX_SIZE"
    help: str
    check: Check | None = None
    parse: Callable[[str], Any] | None = None  # the command line takes words (e.g. on/off) that become the value
    choices: tuple[str, ...] = ()  # documented and offered on the command line; checked by ``check``


def option(
    default: Any,
    *,
    flag: str,
    help: str,
    env: str | None = None,
    check: Check | None = None,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A setting: a dataclass field whose metadata is its :class:`Option` (the env var defaults to
    ``MODELYARD_`` + the flag in capitals)."""
    name = env or "MODELYARD_" + flag.lstrip("-").replace("-", "_").upper()
    if choices and check is None and parse is None:
        check = one_of(*choices)
    declared = Option(flag, name, help, check, parse, choices)
    return field(default=default, metadata={OPTION: declared})


class Section:
    """Base of every settings section: checks each field's value, then the section's own cross-field rules."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            declared: Option | None = item.metadata.get(OPTION)
            value = getattr(self, item.name)
            if declared is None or value is None or isinstance(value, Section):
                continue
            if declared.check is not None:
                problem = declared.check(value)
                if problem:
                    raise SettingsError(f"{declared.flag} {problem}, got {value!r}")
        self.check()

    def check(self) -> None:
        """Rules that involve several fields of the section; raise :class:`SettingsError`."""


@dataclass(frozen=True)
class Declared:
    """One setting as the command line and the docs see it."""

    section: str  # the field of the composed settings that holds its section
    name: str  # the field's name: unique across all sections, the command line's parameter name
    option: Option
    type: Any
    default: Any


def declared(root: type[Any]) -> list[Declared]:
    """Every setting of a composed settings class, section by section, in declaration order."""
    found: list[Declared] = []
    for section_field in dataclasses.fields(root):
        section_type = typing.get_type_hints(root)[section_field.name]
        hints = typing.get_type_hints(section_type)
        for item in dataclasses.fields(section_type):
            declared_option = item.metadata.get(OPTION)
            if declared_option is None:
                continue
            if item.default is not dataclasses.MISSING:
                default = item.default
            else:
                assert item.default_factory is not dataclasses.MISSING, f"{item.name} declares no default"
                default = item.default_factory()
            found.append(Declared(section_field.name, item.name, declared_option, hints[item.name], default))
    names = [d.name for d in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise TypeError(f"setting names must be unique across sections: {sorted(duplicates)}")
    return found


def build(root: type[Any], **values: Any) -> Any:
    """The composed settings from flat values (``port=9000``); what is not given keeps its declared default."""
    by_section: dict[str, dict[str, Any]] = {}
    known = {d.name: d for d in declared(root)}
    for name, value in values.items():
        item = known.get(name)
        if item is None:
            raise SettingsError(f"unknown setting {name!r}")
        by_section.setdefault(item.section, {})[name] = value
    hints = typing.get_type_hints(root)
    sections = {f.name: hints[f.name](**by_section.get(f.name, {})) for f in dataclasses.fields(root)}
    return root(**sections)


def flat(settings: Any) -> Iterator[tuple[str, Any]]:
    """(name, value) of every setting in composed settings (for logs and tests)."""
    for section_field in dataclasses.fields(settings):
        section = getattr(settings, section_field.name)
        for item in dataclasses.fields(section):
            if OPTION in item.metadata:
                yield item.name, getattr(section, item.name)


# -- checks ------------------------------------------------------------------------------------------------------


def between(low: float, high: float) -> Check:
    return lambda value: None if low <= value <= high else f"must be between {low:g} and {high:g}"


def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"must be at least {low:g}"


def positive(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "cannot be negative"


def not_blank(value: str) -> str | None:
    return None if value.strip() else "cannot be empty"


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def prefixed(*prefixes: str) -> Check:
    return lambda value: None if value.startswith(prefixes) else f"must start with {', '.join(prefixes)}"


def on_off(text: str) -> bool:
    """``on``/``off`` (and the usual spellings of true and false) as a switch given in words."""
    lowered = text.lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise SettingsError(f"expected 'on' or 'off', got {text!r}")
