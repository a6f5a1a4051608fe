"""What an access policy costs: manifest GET by tag, no policy against a 20-rule policy.

    bench/policy [--seconds 10] [--connections 64] [--rounds 1] [--markdown FILE] [--json FILE]

Two ``angos serve`` processes run at once on fresh fs stores on 127.0.0.1, their configs
the same but for ``[global.access_policy]``: none, or ``default = "deny"`` with twenty CEL
rules (one letting the harness's readiness probe reach ``GET /v2/``, eighteen of
:mod:`bench.policy_cel`, none of which matches the benchmark's request, then the one that
allows it), so every request is one evaluation of the whole
policy or its memoised decision. Each row is ``wrk`` GETting one manifest by tag,
anonymously; the policy row is reported as a ratio to the no-policy row of the same round
(target: at least 0.9), the rows alternating their order from round to round. See
bench/README.md.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from contextlib import ExitStack

from bench import workloads as w
from bench import wrk_rows
from bench.policy_cel import RULES
from bench.servers import Angos
from bench.wrk_rows import REPO, TAG, Row

LABELS = {"none": "no access policy", "policy": "[global.access_policy], 20 rules"}
TARGET = 0.9
#: The first rule: the harness waits for ``GET /v2/`` (first, so that the rules that read
#: ``request.namespace`` without ``has()`` never fail it).
PROBE = "request.action == 'get-api-version'"
#: The twentieth rule: the loopback client may do anything under bench/ (push the seed,
#: pull it); the nineteen before it never match the benchmark's request.
ALLOW = "identity.client_ip == '127.0.0.1' && has(request.namespace) && " + (
    "request.namespace.startsWith('bench/')"
)


def policy_toml() -> str:
    rules = [PROBE, *RULES[:18], ALLOW]
    assert len(rules) == 20
    body = ",\n".join(f"  {json.dumps(rule)}" for rule in rules)
    return f'\n[global.access_policy]\ndefault = "deny"\nrules = [\n{body},\n]\n'


def main(argv: list[str] | None = None) -> int:
    args = wrk_rows.parser("bench/policy", __doc__).parse_args(argv)
    servers = {
        "none": wrk_rows.server(args, "none"),
        "policy": wrk_rows.server(args, "policy", policy_toml()),
    }

    def start(stack: ExitStack) -> Iterator[Angos]:
        yield from servers.values()

    async def rows() -> list[Row]:
        for reg in servers.values():
            async with w.session(4, 120) as s:
                await w.push_image(s, reg.url, REPO, TAG, random.Random(4), 4096, 8192)
        return [Row(name, LABELS[name], reg) for name, reg in servers.items()]

    return wrk_rows.main(args, start, rows, column="config", target=TARGET)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
