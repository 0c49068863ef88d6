"""Frozen dataclasses that are cheap to build: :func:`fast_init`.

A ``@dataclass(frozen=True)`` class gets an ``__init__`` that stores each field through
``object.__setattr__`` (the class's own ``__setattr__`` refuses every assignment). That costs
about 80 ns a field: a 13-field audit entry 1.1 µs, against 0.2 µs for the same class unfrozen.
The request path builds ten or so such values per record read (the access request and its
decision, the record's metadata, its audit entry, and the sequencer's copy of that entry), which
made dataclass construction about a tenth of the server's CPU under a BatchGetRecords load
(docs/profile.md).

:func:`fast_init` keeps everything the dataclass decorator made (equality, hashing, ``repr``,
``dataclasses.replace``, the refusal of assignments) and replaces only ``__init__``, by one with
the same parameters, defaults and default factories that writes the fields into the instance's
``__dict__`` and then calls ``__post_init__`` if the class has one. It refuses classes it cannot
build this way (slots, ``init=False`` fields, ``InitVar`` pseudo-fields) rather than guessing.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """``cls`` (a frozen dataclass, decorated after ``@dataclass(frozen=True)``) with the
    ``__init__`` described in the module docstring. TypeError for a class it does not handle."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: fast_init is for frozen dataclasses")
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: a slotted class has no instance __dict__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    generated = list(inspect.signature(cls.__init__).parameters)[1:]
    if generated != [f.name for f in fields if not f.kw_only] + [f.name for f in fields if f.kw_only]:
        # an init=False field, or an InitVar (a parameter that is not a field)
        raise TypeError(f"{cls.__name__}: only classes whose fields are all parameters")
    env: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body = ["_d = self.__dict__"]
    for f in fields:
        if f.default is not dataclasses.MISSING:
            env[f"_default_{f.name}"] = f.default
            param = f"{f.name}=_default_{f.name}"
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            param = f"{f.name}=_MISSING"
            body.append(f"if {f.name} is _MISSING: {f.name} = _factory_{f.name}()")
        else:
            param = f.name
        (keyword if f.kw_only else positional).append(param)
        body.append(f"_d[{f.name!r}] = {f.name}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({signature}):\n" + "".join(f"    {line}\n" for line in body)
    # the dataclasses module's own technique; the source holds only the class's field names
    # (identifiers) and names bound in env, never outside input
    exec(source, env)  # noqa: S102
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning to a method)
    return cls
