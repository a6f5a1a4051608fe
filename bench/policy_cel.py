"""The CEL libraries on PyPI on one 20-rule access policy: compile time and evaluations/s.

    .venv/bin/python -m bench.policy_cel [--seconds 1] [--rounds 3]

Measures, for each library that is installed (``cel-python``: pure Python, import ``celpy``;
``common-expression-language``: Rust bindings of cel-rust, import ``cel``;
``cel-expr-python``: Google's C++ cel-cpp bindings), the time to compile the 20 rules, and
how many whole-policy decisions per second it makes when no rule matches (every rule is
evaluated: a request's worst case) on one request's variables, the conversion of those
variables into the library's values included, as a request pays it. Then Angos's own
engine (:class:`angos_core.policy.PolicyEngine`) on the same rules: a decision for a request
shape not seen before (each request a new digest) and for a repeated one (memoised). Each
figure is one run on a shared machine: compare the rows of one run, not runs.
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

#: Every rule in one program whose value is the list of the rules' values: one evaluation
#: per request, as angos_core.policy does (newlines end a rule's // comment).
COMBINED = "[" + ",".join(f"\n({rule}\n)" for rule in RULES) + "\n]"


# The libraries are imported by name, typed Any: only cel-expr-python is a dependency, the
# others are installed by hand to compare (pip install cel-python common-expression-language).


def celpy_policy(combined: bool) -> Decide:
    celpy: Any = importlib.import_module("celpy")

    env = celpy.Environment()
    programs = [env.program(env.compile(r)) for r in ([COMBINED] if combined else RULES)]

    def decide(variables: dict[str, Any]) -> bool:
        activation = celpy.json_to_cel(variables)
        if combined:
            return any(bool(v) for v in programs[0].evaluate(activation))
        return any(bool(program.evaluate(activation)) for program in programs)

    return decide


def cel_rust_policy(combined: bool) -> Decide:
    cel: Any = importlib.import_module("cel")

    programs = [cel.compile(r) for r in ([COMBINED] if combined else RULES)]

    def decide(variables: dict[str, Any]) -> bool:
        context = cel.Context(variables=variables)
        if combined:
            return any(v is True for v in programs[0].execute(context))
        return any(program.execute(context) is True for program in programs)

    return decide


def cel_cpp_policy(combined: bool) -> Decide:
    cel_cpp: Any = importlib.import_module("cel_expr_python.cel")

    env = cel_cpp.NewEnv(variables={"identity": cel_cpp.Type.DYN, "request": cel_cpp.Type.DYN})
    programs = [env.compile(r) for r in ([COMBINED] if combined else RULES)]

    def decide(variables: dict[str, Any]) -> bool:
        activation = env.Activation(variables)
        if combined:
            return any(v is True for v in programs[0].eval(activation).plain_value())
        return any(program.eval(activation).value() is True for program in programs)

    return decide


LIBRARIES: list[tuple[str, str, Callable[[bool], Decide]]] = [
    ("cel-python (pure Python)", "celpy", celpy_policy),
    ("common-expression-language (Rust)", "cel", cel_rust_policy),
    ("cel-expr-python (C++)", "cel_expr_python.cel", cel_cpp_policy),
]


def _on_variables(decide: Decide) -> Callable[[], object]:
    return lambda: decide(VARIABLES)


def rate(decide: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``decide`` over ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            decide()
        count += 50
    return count / (time.perf_counter() - start)


def engine_cases() -> dict[str, Callable[[], object]]:
    """Angos's engine on RULES: a new request shape each call (a new digest), or one shape."""
    from angos_core.config import AccessPolicyConfig
    from angos_core.identity import Identity
    from angos_core.policy import PolicyEngine, PolicyRequest

    engine = PolicyEngine.build(AccessPolicyConfig(rules=RULES, default="deny"), {})
    dave = Identity("dave", "dave", "identity", "basic")
    counter = iter(range(1 << 62))

    def fresh() -> object:
        digest = f"sha256:{next(counter):064x}"
        return engine.decide(
            dave, "127.0.0.1", PolicyRequest("get-blob", "team/app", digest=digest)
        )

    same = PolicyRequest("get-blob", "team/app", digest="sha256:" + "0" * 64)

    def repeated() -> object:
        return engine.decide(dave, "127.0.0.1", same)

    if engine.decide(dave, "127.0.0.1", same).allowed:
        raise AssertionError("a rule matched: every rule must be evaluated")
    return {
        "PolicyEngine.decide, new request shapes": fresh,
        "PolicyEngine.decide, a repeated shape": repeated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per round (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="best of (default 3)")
    args = parser.parse_args()
    cases: dict[str, Callable[[], object]] = {}
    setup: dict[str, tuple[float, float]] = {}
    for label, module, build in LIBRARIES:
        if importlib.util.find_spec(module) is None:
            print(f"{label}: not installed")
            continue
        start = time.perf_counter()
        importlib.import_module(module)
        import_ms = (time.perf_counter() - start) * 1000
        for combined in (False, True):
            start = time.perf_counter()
            decide = build(combined)
            compile_ms = (time.perf_counter() - start) * 1000
            row = f"{label}, {'one program' if combined else 'per rule'}"
            setup[row] = (import_ms, compile_ms)
            if decide(VARIABLES):
                raise AssertionError("a rule matched: every rule must be evaluated")
            cases[row] = _on_variables(decide)
    cases.update(engine_cases())
    # Rounds interleave the cases, so that a burst of load on this shared machine does not
    # favour one; the best round of each is kept.
    best = dict.fromkeys(cases, 0.0)
    for _ in range(args.rounds):
        for label, case in cases.items():
            best[label] = max(best[label], rate(case, args.seconds))
    print(f"{len(RULES)} rules, none matching (every rule evaluated), best of {args.rounds}")
    print(f"{'':46} {'import ms':>9} {'compile ms':>10} {'decisions/s':>11} {'us/decision':>11}")
    for label, per_sec in best.items():
        import_ms, compile_ms = setup.get(label, (float("nan"), float("nan")))
        print(
            f"{label:46} {import_ms:9.0f} {compile_ms:10.1f} {per_sec:11.0f} {1e6 / per_sec:11.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
