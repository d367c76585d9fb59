"""The allowed tag values, loaded once from ``resources/vocabulary.toml``."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources

from neurochange.errors import InputError

TAG_FIELDS = ("modality", "subtype", "disorder", "design", "imaging", "direction")


@lru_cache(maxsize=1)
def vocabulary() -> dict:
    """The parsed vocabulary file: ``{field: {"values": [...]}}``; subtypes by modality."""
    text = resources.files("neurochange").joinpath("resources/vocabulary.toml").read_text()
    return tomllib.loads(text)


def allowed(field: str) -> tuple[str, ...]:
    """Allowed values of a tag field (all subtypes pooled for ``subtype``)."""
    vocab = vocabulary()
    if field == "subtype":
        values: list[str] = []
        for sub in vocab["subtype"].values():
            values += [v for v in sub if v not in values]
        return tuple(values)
    if field not in vocab or field == "version":
        raise KeyError(field)
    return tuple(vocab[field]["values"])


def groups(field: str) -> dict[str, tuple[str, ...]]:
    """Named groups of a tag's values (``disorder``: psychiatric, neurological, ...); a query may name a
    group for its values. Empty for fields without groups."""
    if field == "subtype":
        return {}
    return {name: tuple(values) for name, values in vocabulary().get(field, {}).get("groups", {}).items()}


def expand(field: str, value: str) -> tuple[str, ...]:
    """``value`` as the tag values it stands for: a group's values, or the value itself."""
    return groups(field).get(value, (value,))


def check_value(field: str, value: str, *, file=None, line=None) -> str:
    """Return ``value`` if allowed for ``field``, else raise an InputError listing the valid ones."""
    values = allowed(field)
    if value not in values:
        raise InputError(
            f"{value!r} is not a valid {field}; valid values: {', '.join(values)}",
            file=file,
            line=line,
            field=field,
        )
    return value
