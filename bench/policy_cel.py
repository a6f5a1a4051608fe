"""The CEL libraries on PyPI on one 20-rule access policy: compile time and evaluations/s.

    .venv/bin/python -m bench.policy_cel [--seconds 2]

Measures, for each library that is installed (``cel-python``: pure Python, import ``celpy``;
``common-expression-language``: Rust bindings of cel-rust, import ``cel``;
``cel-expr-python``: Google's C++ cel-cpp bindings), the time to compile the 20 rules, and
how many whole-policy decisions per second it makes when no rule matches (every rule is
evaluated: a request's worst case) on one request's variables, the conversion of those
variables into the library's values included, as a request pays it. Each figure is one run
on a shared machine: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from typing import Any

#: Twenty rules in the style of docs/access-policies.md; none matches VARIABLES below.
RULES = [
    "identity.username == 'admin'",
    "identity.username == 'root'",
    "identity.id == 'ops-bot'",
    "request.action == 'healthz'",
    "request.action == 'readyz'",
    "request.action in ['list-catalog'] && identity.username != null",
    "identity.oidc != null && identity.oidc.claims['repository'] == 'acme/app'",
    "identity.oidc != null && identity.oidc.claims['ref'] == 'refs/heads/main'",
    "identity.oidc != null && identity.oidc.provider_name == 'gitlab'",
    "'Platform' in identity.certificate.organizations",
    "'deployer' in identity.certificate.common_names",
    "request.namespace.startsWith('public/') && request.action == 'get-manifest'",
    "request.namespace.startsWith('public/') && request.action == 'get-blob'",
    "has(request.from) && request.from.startsWith('base/')",
    "has(request.tags) && request.tags.exists(t, t.startsWith('release-'))",
    "identity.client_ip.startsWith('10.0.')",
    "identity.client_ip == '192.0.2.1'",
    "identity.username in ['alice', 'bob', 'carol'] && request.action == 'put-manifest'",
    "request.action.matches('^delete-') && identity.username == 'janitor'",
    "identity.username != null && identity.username.endsWith('@example.com')",
]

VARIABLES: dict[str, Any] = {
    "identity": {
        "id": "dave",
        "username": "dave",
        "client_ip": "127.0.0.1",
        "certificate": {"common_names": [], "organizations": []},
        "oidc": None,
    },
    "request": {
        "action": "put-manifest",
        "namespace": "team/app",
        "tags": ["v1"],
    },
}

Decide = Callable[[dict[str, Any]], bool]


def celpy_policy() -> Decide:
    import celpy

    env = celpy.Environment()
    programs = [env.program(env.compile(rule)) for rule in RULES]

    def decide(variables: dict[str, Any]) -> bool:
        activation = celpy.json_to_cel(variables)
        return any(program.evaluate(activation) is True for program in programs)

    return decide


def cel_rust_policy() -> Decide:
    import cel

    programs = [cel.compile(rule) for rule in RULES]

    def decide(variables: dict[str, Any]) -> bool:
        context = cel.Context(variables=variables)
        return any(program.execute(context) is True for program in programs)

    return decide


def cel_cpp_policy() -> Decide:
    from cel_expr_python import cel as cel_cpp

    env = cel_cpp.NewEnv(variables={"identity": cel_cpp.Type.DYN, "request": cel_cpp.Type.DYN})
    programs = [env.compile(rule) for rule in RULES]

    def decide(variables: dict[str, Any]) -> bool:
        activation = env.Activation(variables)
        return any(program.eval(activation).value() is True for program in programs)

    return decide


LIBRARIES: list[tuple[str, str, Callable[[], Decide]]] = [
    ("cel-python (pure Python)", "celpy", celpy_policy),
    ("common-expression-language (Rust)", "cel", cel_rust_policy),
    ("cel-expr-python (C++)", "cel_expr_python", cel_cpp_policy),
]


def measure(build: Callable[[], Decide], seconds: float) -> tuple[float, float]:
    """(milliseconds to compile the 20 rules, decisions per second)."""
    start = time.perf_counter()
    decide = build()
    compile_ms = (time.perf_counter() - start) * 1000
    if decide(VARIABLES):
        raise AssertionError("a rule matched: every rule must be evaluated")
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            decide(VARIABLES)
        count += 50
    return compile_ms, count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per library (default 2)")
    args = parser.parse_args()
    print(f"{len(RULES)} rules, no rule matching (all evaluated), one request's variables")
    print(f"{'library':38} {'compile ms':>11} {'decisions/s':>12} {'rule evals/s':>13}")
    for label, module, build in LIBRARIES:
        if importlib.util.find_spec(module) is None:
            print(f"{label:38} not installed")
            continue
        compile_ms, per_sec = measure(build, args.seconds)
        print(f"{label:38} {compile_ms:11.1f} {per_sec:12.0f} {per_sec * len(RULES):13.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
