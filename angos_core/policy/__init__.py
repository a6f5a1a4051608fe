"""Access policies: who may do what, as CEL rules over ``identity`` and ``request``.

- :mod:`angos_core.policy.actions`: the actions, the request -> action mapping, the Docker
  ``access`` table;
- :mod:`angos_core.policy.engine`: the compiled policies and the decision;
- :mod:`angos_core.policy.cel`: the CEL library, behind two functions;
- :mod:`angos_core.policy.explain`: ``angos policy check``.

See docs/access-policies.md.
"""

from angos_core.policy.actions import ACTIONS, DOCKER_ACTIONS, PolicyRequest, policy_request
from angos_core.policy.engine import Decision, PolicyEngine

__all__ = [
    "ACTIONS",
    "DOCKER_ACTIONS",
    "Decision",
    "PolicyEngine",
    "PolicyRequest",
    "policy_request",
]
