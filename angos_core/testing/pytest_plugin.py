"""The pytest fixtures Angos's own tests use, for a plugin's tests: load it from the
top-level ``conftest.py`` of the plugin's repository::

    pytest_plugins = ["angos_core.testing.pytest_plugin"]

and install ``angos-core[testing]`` in the test environment. Fixtures:

``redis_server`` (session), ``redis_url``
    a real ``redis-server`` on a free loopback port (:mod:`angos_core.testing.redis_server`).
``moto_server`` (session), ``s3_bucket``
    a moto S3 server over HTTP and a fresh bucket on it (:mod:`angos_core.testing.moto_server`).
``angos_server_factory``, ``angos_server``
    real ``angos serve`` subprocesses (:mod:`angos_core.testing.angos_server`); their stderr is
    added to a failing test's report.
``oidc_issuer``
    a local OIDC issuer (discovery, JWKS, RS256/ES256 signing, key rotation, outages) on
    loopback (:mod:`angos_core.testing.oidc_issuer`).
``tls_pki``
    a throwaway CA with server and client certificates on disk (:mod:`angos_core.testing.tls`).
``docker_engine`` (session)
    a private ``dockerd`` (root only) for end-to-end pushes
    (:mod:`angos_core.testing.docker_engine`).

Tools that are not installed (redis-server, dockerd) skip the tests that need them, or fail
them under ``CI=true``. In-process serving needs no fixture: ``async with serve_config(toml,
root=tmp_path) as api`` (:mod:`angos_core.testing.api`).

Opt-in rather than a ``pytest11`` entry point: angos-core is the runtime package installed in
every registry image, and an entry point would inject these fixtures and a report hook into
any pytest session of an environment that merely has angos-core installed.
"""

pytest_plugins = [
    "angos_core.testing.redis_server",
    "angos_core.testing.moto_server",
    "angos_core.testing.angos_server",
    "angos_core.testing.docker_engine",
    "angos_core.testing.oidc_issuer",
    "angos_core.testing.tls",
]
