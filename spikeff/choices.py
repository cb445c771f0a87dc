"""The one check of a dataclass field typed ``Literal[...]``: its value must be one of the choices."""

from __future__ import annotations

import functools
import typing
from typing import Any, Literal

__all__ = ["check_choices"]


@functools.cache
def _literal_fields(cls: type) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((name, typing.get_args(t)) for name, t in hints.items() if typing.get_origin(t) is Literal)


def check_choices(obj: Any) -> None:
    """Raise ``ValueError`` naming the first ``Literal``-typed field of the dataclass ``obj`` whose
    value is not one of its choices (call it from ``__post_init__``).

    Parameters
    ----------
    obj : a dataclass instance.

    Raises
    ------
    ValueError : a field's value is not one of its choices.
    """
    for name, choices in _literal_fields(type(obj)):
        value = getattr(obj, name)
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
