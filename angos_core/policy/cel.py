"""The one place the CEL library is used: compile a rule, evaluate it on variables.

The library is ``cel-expr-python``, the bindings of Google's cel-cpp (the reference
implementation): rules are parsed *and type-checked* at load against the two declared
variables ``identity`` and ``request``, so a misspelt variable or an unknown function is a
config error, not a request that fails later. ``bench/policy_cel.py`` measures it against
``cel-python`` (pure Python) and ``common-expression-language`` (Rust); see
docs/access-policies.md for the figures and why.

One extension over standard CEL, for Angos in Rust's policies to carry over unchanged: a
``list.contains(value)`` member function (cel-rust has it; standard CEL spells it
``value in list``).

Retention rules (``angos prune``) have an environment of their own: the variable ``image``
and Angos's functions ``now()``, ``days(n)``, ``hours(n)``, ``minutes(n)``,
``top_pushed(n)`` and ``top_pulled(n)``. The last two and ``now()`` depend on the manifest
being judged and the run's clock, which the library's function implementations cannot be
handed: :func:`retention_scope` sets them around each evaluation (a context variable, so
two evaluations on different tasks or threads never see each other's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@functools.cache
def _library() -> Any:
    # Imported when a rule is first compiled: a registry with no policy or retention rule
    # never pays its ~5 MiB.
    from cel_expr_python import cel

    return cel


class CompileError(ValueError):
    """The rule does not parse or does not type-check; the message is the library's, first
    line only (the rest repeats the rule with a caret)."""


class EvaluationError(Exception):
    """The rule failed on these variables (a missing key, a null dereference, a bad regex)."""


def _list_contains(values: Sequence[Any], item: Any) -> bool:
    return item in values


@functools.cache
def _environment() -> Any:
    lib = _library()
    contains = lib.FunctionDecl(
        "contains",
        [
            lib.Overload(
                "angos_list_contains",
                lib.Type.BOOL,
                [lib.Type.List(lib.Type.DYN), lib.Type.DYN],
                is_member=True,
                impl=_list_contains,
            )
        ],
    )
    return lib.NewEnv(
        variables={"identity": lib.Type.DYN, "request": lib.Type.DYN},
        extensions=[lib.CelExtension("angos", [contains])],
    )


@dataclass(frozen=True, slots=True)
class RetentionScope:
    """What the retention functions read: the run's clock (seconds since the epoch), the
    tag being judged (None: an untagged manifest) and the repository's rankings (tag ->
    0 for the most recent)."""

    now: int
    tag: str | None = None
    pushed_rank: Mapping[str, int] = field(default_factory=dict)
    pulled_rank: Mapping[str, int] = field(default_factory=dict)


_SCOPE: ContextVar[RetentionScope] = ContextVar("angos_retention_scope")


@contextmanager
def retention_scope(scope: RetentionScope) -> Iterator[None]:
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _now() -> int:
    return _SCOPE.get().now


def _top(ranks: Callable[[RetentionScope], Mapping[str, int]]) -> Callable[[int], bool]:
    def top(n: int) -> bool:
        scope = _SCOPE.get()
        rank = ranks(scope).get(scope.tag) if scope.tag is not None else None
        return rank is not None and rank < n

    return top


def _seconds(name: str, factor: int) -> Any:
    lib = _library()
    return lib.FunctionDecl(
        name,
        [
            lib.Overload(
                f"angos_{name}",
                lib.Type.INT,
                [lib.Type.INT],
                impl=lambda n: n * factor,
            )
        ],
    )


@functools.cache
def _retention_environment() -> Any:
    lib = _library()

    def decl(name: str, impl: Callable[[int], bool]) -> Any:
        overload = lib.Overload(f"angos_{name}", lib.Type.BOOL, [lib.Type.INT], impl=impl)
        return lib.FunctionDecl(name, [overload])

    functions = [
        lib.FunctionDecl("now", [lib.Overload("angos_now", lib.Type.INT, [], impl=_now)]),
        _seconds("days", 86400),
        _seconds("hours", 3600),
        _seconds("minutes", 60),
        decl("top_pushed", _top(lambda scope: scope.pushed_rank)),
        decl("top_pulled", _top(lambda scope: scope.pulled_rank)),
    ]
    return lib.NewEnv(
        variables={"image": lib.Type.DYN},
        extensions=[lib.CelExtension("angos_retention", functions)],
    )


def _first_line(message: str) -> str:
    text = message.removeprefix("INVALID_ARGUMENT: ").removeprefix("ERROR: ")
    return text.splitlines()[0].replace("<input>:", "at ") if text else message


@dataclass(frozen=True, slots=True)
class Program:
    """One compiled rule."""

    source: str
    _expression: Any
    #: The library's error type, looked up once here rather than per evaluation.
    _error: Any = field(default_factory=lambda: _library().Type.ERROR)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The rule's value (any CEL value as Python), or raise :class:`EvaluationError`."""
        return self.evaluate_in(activation(variables))

    def evaluate_in(self, prepared: Any) -> Any:
        """As :meth:`evaluate` on variables :func:`activation` prepared once for several
        rules."""
        value = self._expression.eval(prepared)
        if value.type() == self._error:
            raise EvaluationError(str(value.value()))
        return value.plain_value()


def activation(variables: Mapping[str, Any]) -> Any:
    """The variables in the library's form, built once per request for every rule."""
    return _environment().Activation(variables)


def compile_rule(source: str) -> Program:
    try:
        return Program(source, _environment().compile(source))
    except RuntimeError as exc:
        raise CompileError(_first_line(str(exc))) from None


def retention_activation(variables: Mapping[str, Any]) -> Any:
    """As :func:`activation`, for rules of :func:`compile_retention_rule`."""
    return _retention_environment().Activation(variables)


def compile_retention_rule(source: str) -> Program:
    """A retention rule, type-checked against ``image`` and the retention functions."""
    try:
        return Program(source, _retention_environment().compile(source))
    except RuntimeError as exc:
        raise CompileError(_first_line(str(exc))) from None
