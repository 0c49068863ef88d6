"""vault_service/values.py: a frozen dataclass with fast_init behaves as the plain frozen
dataclass in every way a caller can see (parameters, defaults, factories, keyword-only fields,
__post_init__, equality, hashing, replace, copying, the refusal of assignments), and classes it
cannot build that way are refused at decoration time."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import InitVar, dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault_service.values import fast_init


def _pair() -> tuple[type, type]:
    """The same class twice: as the dataclass decorator makes it, and with fast_init."""

    def make() -> type:
        @dataclass(frozen=True)
        class Value:
            a: int
            b: str = "b"
            c: tuple[int, ...] = field(default_factory=tuple)
            d: int = field(default=4, kw_only=True)
            seen: list[int] = field(default_factory=list, compare=False, repr=False)

            def __post_init__(self) -> None:
                if self.a < 0:
                    raise ValueError("a must be >= 0")
                self.seen.append(self.a)

        return Value

    return make(), fast_init(make())


PLAIN, FAST = _pair()


@given(
    a=st.integers(min_value=0),
    b=st.text(max_size=5),
    c=st.tuples(st.integers()),
    d=st.integers(),
    how=st.sampled_from(["all", "positional", "defaults", "keywords"]),
)
def test_construction_matches_the_dataclass(a: int, b: str, c: tuple[int], d: int, how: str) -> None:
    def build(cls: type) -> object:
        if how == "all":
            return cls(a, b, c, d=d)
        if how == "positional":
            return cls(a, b)
        if how == "defaults":
            return cls(a)
        return cls(a=a, c=c, b=b)

    plain, fast = build(PLAIN), build(FAST)
    assert fast.seen == [a]  # type: ignore[attr-defined]  # __post_init__ ran, once
    assert dataclasses.astuple(plain) == dataclasses.astuple(fast)
    assert repr(plain).replace("Value", "") == repr(fast).replace("Value", "")
    assert fast == dataclasses.replace(fast) and hash(fast) == hash(dataclasses.replace(fast))


def test_the_parameters_are_the_dataclass_ones() -> None:
    def shape(cls: type) -> list[tuple[str, object, bool]]:
        params = inspect.signature(cls.__init__).parameters.values()
        return [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in params]

    assert shape(FAST) == shape(PLAIN)
    assert inspect.signature(FAST.__init__).parameters["b"].default == "b"
    for cls in (PLAIN, FAST):
        with pytest.raises(TypeError):
            cls(1, "b", (), [], 5)  # d is keyword-only
        with pytest.raises(TypeError):
            cls()  # a is required
        with pytest.raises(TypeError):
            cls(1, e=2)  # no such field
        with pytest.raises(ValueError):
            cls(-1)  # __post_init__ refuses


def test_factories_give_each_instance_its_own_value() -> None:
    one, two = FAST(1), FAST(1)
    assert one.seen is not two.seen  # type: ignore[attr-defined]


def test_a_fast_value_is_still_frozen_and_copies() -> None:
    value = FAST(1, "x", (2,), d=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.a = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del value.b  # type: ignore[misc]
    assert copy.copy(value) == value and copy.deepcopy(value) == value
    assert dataclasses.replace(value, b="y").b == "y"


def test_the_projects_values_pickle_and_keep_their_fields() -> None:
    from vault_service.audit.model import AuditRow

    row = AuditRow(at=1.0, principal="p", action="a", decision="allow", released_fields=("x",))
    assert pickle.loads(pickle.dumps(row)) == row
    assert dataclasses.asdict(row)["released_fields"] == ("x",)
    assert row == AuditRow(1.0, "p", "a", "allow", released_fields=("x",))


def test_classes_it_cannot_build_are_refused() -> None:
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclass(frozen=True)
    class NotInit:
        a: int
        b: int = field(default=0, init=False)

    @dataclass(frozen=True)
    class WithInitVar:
        a: int
        scale: InitVar[int] = 1

    class NotADataclass:
        pass

    for cls in (Mutable, Slotted, NotInit, WithInitVar, NotADataclass):
        with pytest.raises(TypeError):
            fast_init(cls)
