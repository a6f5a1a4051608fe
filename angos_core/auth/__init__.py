"""Authentication: the ``[auth]`` configuration, the authenticator chain, the failure limit
and the Docker scope of a request.

The interface plugins implement (``Identity``, ``Credentials``, ``Authenticator``) is in
:mod:`angos_core.identity`; the HTTP side (credentials from a request, the challenge, the
request's identity) in :mod:`angos_core.http.auth`.
"""
