"""Serving a config in process for HTTP API tests: :class:`Api`, the app driven through
aiohttp's test client, with small push/pull helpers.

:func:`serve_config` serves any TOML config (a plugin's backend included)::

    async with serve_config(my_toml, root=tmp_path) as api:
        digest, body = await api.push_image("lib/app", "latest")
        assert (await api.get(f"/v2/lib/app/manifests/{digest}")).status == 200

:func:`open_api` is the same on fs storage in one directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from angos_core.http import make_app_from_toml
from angos_core.http.context import REGISTRY
from angos_core.layout import RETENTION_PREFIX
from angos_core.oci import mediatypes as mt
from angos_core.registry import Registry
from angos_core.registry.references import GC_PREFIX

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def fs_toml(root: Path, extra: str = "") -> str:
    return f'[blob_store.fs]\nroot_dir = "{root}"\n{extra}'


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


class Api:
    """A test client plus the storage root it serves from.

    ``files`` lists what is stored (relative paths); by default the files under ``root``.
    """

    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        root: Path,
        app: web.Application,
        files: Callable[[], set[str]] | None = None,
    ) -> None:
        self.client = client
        self.root = root
        self.app = app
        self._files = files

    @property
    def registry(self) -> Registry:
        return self.app[REGISTRY]

    # ------------------------------------------------------------------ raw requests

    async def request(self, method: str, path: str, **kw: Any) -> ClientResponse:
        return await self.client.request(method, path, **kw)

    async def raw(self, method: str, path: str, **kw: Any) -> ClientResponse:
        """A request whose path is sent exactly as given (no ``..`` folding, no re-quoting)."""
        url = URL(str(self.client.make_url("/")).rstrip("/") + path, encoded=True)
        return await self.client.session.request(method, url, **kw)

    async def get(self, path: str, **kw: Any) -> ClientResponse:
        return await self.client.get(path, **kw)

    async def head(self, path: str, **kw: Any) -> ClientResponse:
        return await self.client.head(path, **kw)

    # ------------------------------------------------------------------ helpers

    async def push_blob(self, name: str, data: bytes, algorithm: str = "sha256") -> str:
        digest = digest_of(data, algorithm)
        resp = await self.client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
        assert resp.status == 201, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest
        return digest

    async def put_manifest(
        self,
        name: str,
        reference: str,
        body: bytes | dict[str, Any],
        media_type: str | None = mt.OCI_MANIFEST,
        params: Iterable[tuple[str, str]] = (),
    ) -> ClientResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": media_type} if media_type else {}
        return await self.client.put(
            f"/v2/{name}/manifests/{reference}", data=data, headers=headers, params=list(params)
        )

    async def push_image(
        self,
        name: str,
        tag: str | None = "latest",
        layer: bytes = b"layer-bytes",
        config: bytes = b'{"architecture":"amd64","os":"linux"}',
        **extra: Any,
    ) -> tuple[str, bytes]:
        """Push config + one layer + an OCI manifest; return (manifest digest, body)."""
        await self.push_blob(name, config)
        await self.push_blob(name, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": descriptor(config, OCI_CONFIG),
            "layers": [descriptor(layer, OCI_LAYER)],
            **extra,
        }
        body = json.dumps(manifest, indent=1).encode()
        digest = digest_of(body)
        resp = await self.put_manifest(name, tag or digest, body)
        assert resp.status == 201, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest
        return digest, body

    def files(self) -> set[str]:
        """Every stored file, relative (to assert nothing else appeared), less the garbage
        collector's bookkeeping (:func:`without_gc_bookkeeping`)."""
        if self._files is not None:
            return without_gc_bookkeeping(self._files())
        return without_gc_bookkeeping(
            {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}
        )


def without_gc_bookkeeping(keys: set[str]) -> set[str]:
    """``keys`` less the reference marks and tombstones under ``v2/_gc/``
    (:mod:`angos_core.registry.references`): every push leaves marks, which the next
    collection rotates away, so they are not what a test of stored content looks at; and
    the push and pull times under ``v2/_retention/``, which every push and pull rewrites."""
    return {k for k in keys if not k.startswith((GC_PREFIX, RETENTION_PREFIX))}


async def error_code(resp: ClientResponse) -> str:
    """The first OCI error code of a JSON error response (asserting the body's shape)."""
    assert resp.content_type == "application/json", resp.content_type
    body = await resp.json()
    errors = body["errors"]
    assert isinstance(errors, list) and errors
    assert set(errors[0]) >= {"code", "message", "detail"}
    code: str = errors[0]["code"]
    return code


@asynccontextmanager
async def serve_config(
    toml_text: str,
    *,
    root: Path,
    extra_plugins: Iterable[object] = (),
    files: Callable[[], set[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Api]:
    """The app of ``toml_text`` on a loopback port, closed on leaving.

    ``root`` is the directory the config stores under; ``files`` lists what is stored when
    that is not (only) the files under ``root`` (see :meth:`Api.files`). ``extra_plugins``
    are registered besides the installed ones (backends defined by the test itself).
    ``headers`` go with every request of the client (``Authorization``, say).
    """
    app = make_app_from_toml(toml_text, extra_plugins)
    client: TestClient[web.Request, web.Application]
    async with TestClient(TestServer(app), headers=headers) as client:
        yield Api(client, root, app, files)


def open_api(
    root: Path,
    extra_toml: str = "",
    extra_plugins: Iterable[object] = (),
    headers: Mapping[str, str] | None = None,
) -> AbstractAsyncContextManager[Api]:
    """:func:`serve_config` on fs storage under ``root``, plus ``extra_toml`` tables."""
    return serve_config(
        fs_toml(root, extra_toml), root=root, extra_plugins=extra_plugins, headers=headers
    )


#: What tests import (fixtures and hooks come from angos_core.testing.pytest_plugin).
__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "OCI_CONFIG",
    "OCI_LAYER",
    "Api",
    "descriptor",
    "digest_of",
    "error_code",
    "fs_toml",
    "open_api",
    "serve_config",
]
