"""Access policies: who may do what, as CEL rules over ``identity`` and ``request``.

- :mod:`angos_core.policy.actions`: the actions, the request -> action mapping, the token
  scopes each action needs;
- :mod:`angos_core.policy.engine`: the compiled policies and the decision;
- :mod:`angos_core.policy.cel`: the CEL library, behind two functions;
- :mod:`angos_core.policy.explain`: ``angos policy check``.

See docs/access-policies.md.
"""

from angos_core.policy.actions import ACTIONS, TOKEN_SCOPES, PolicyRequest, policy_request
from angos_core.policy.engine import Decision, PolicyEngine

__all__ = [
    "ACTIONS",
    "TOKEN_SCOPES",
    "Decision",
    "PolicyEngine",
    "PolicyRequest",
    "policy_request",
]
