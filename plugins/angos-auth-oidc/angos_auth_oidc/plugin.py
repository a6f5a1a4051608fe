"""The ``angos`` entry point of the distribution angos-auth-oidc."""
