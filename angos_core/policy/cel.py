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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel as _cel


class CompileError(ValueError):
    """The rule does not parse or does not type-check; the message is the library's, first
    line only (the rest repeats the rule with a caret)."""


class EvaluationError(Exception):
    """The rule failed on these variables (a missing key, a null dereference, a bad regex)."""


def _list_contains(values: Sequence[Any], item: Any) -> bool:
    return item in values


def _environment() -> Any:
    contains = _cel.FunctionDecl(
        "contains",
        [
            _cel.Overload(
                "angos_list_contains",
                _cel.Type.BOOL,
                [_cel.Type.List(_cel.Type.DYN), _cel.Type.DYN],
                is_member=True,
                impl=_list_contains,
            )
        ],
    )
    return _cel.NewEnv(
        variables={"identity": _cel.Type.DYN, "request": _cel.Type.DYN},
        extensions=[_cel.CelExtension("angos", [contains])],
    )


_ENV = _environment()


def _first_line(message: str) -> str:
    text = message.removeprefix("INVALID_ARGUMENT: ").removeprefix("ERROR: ")
    return text.splitlines()[0].replace("<input>:", "at ") if text else message


@dataclass(frozen=True, slots=True)
class Program:
    """One compiled rule."""

    source: str
    _expression: Any

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The rule's value (any CEL value as Python), or raise :class:`EvaluationError`."""
        return self.evaluate_in(activation(variables))

    def evaluate_in(self, prepared: Any) -> Any:
        """As :meth:`evaluate` on variables :func:`activation` prepared once for several
        rules."""
        value = self._expression.eval(prepared)
        if value.type() == _cel.Type.ERROR:
            raise EvaluationError(str(value.value()))
        return value.plain_value()


def activation(variables: Mapping[str, Any]) -> Any:
    """The variables in the library's form, built once per request for every rule."""
    return _ENV.Activation(variables)


def compile_rule(source: str) -> Program:
    try:
        return Program(source, _ENV.compile(source))
    except RuntimeError as exc:
        raise CompileError(_first_line(str(exc))) from None
