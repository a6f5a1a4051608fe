"""GET / HEAD / PUT / DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from angos_core.errors import ManifestUnknown
from angos_core.http.context import registry
from angos_core.http.streams import read_limited
from angos_core.oci import mediatypes as mt
from angos_core.registry import StoredManifest


def _accepts(request: web.Request, media_type: str) -> bool:
    """Whether the client's Accept allows ``media_type``.

    Only an Accept that names specific manifest types and no wildcard restricts anything:
    clients sending nothing, ``*/*`` or only generic types get the manifest as stored.
    """
    accepted = set()
    for header in request.headers.getall("Accept", []):
        for item in header.split(","):
            value = mt.normalise_content_type(item)
            if value:
                accepted.add(value)
    if not accepted & mt.KNOWN_MANIFESTS or any("*" in a for a in accepted):
        return True
    return media_type in accepted


async def _fetch(request: web.Request) -> StoredManifest:
    name, reference = request.match_info["name"], request.match_info["reference"]
    reg = registry(request)
    cached = reg.pull_through.namespace(name)
    if cached is not None:
        manifest = await reg.pull_through.manifest(cached, name, reference)
    else:
        manifest = await reg.manifests.get(name, reference)
    if not _accepts(request, manifest.media_type):
        raise ManifestUnknown(
            f"manifest is {manifest.media_type}, which the Accept header does not allow",
            detail={"name": name, "reference": reference, "mediaType": manifest.media_type},
        )
    return manifest


def _headers(manifest: StoredManifest) -> dict[str, str]:
    return {
        "Content-Type": manifest.media_type,
        "Docker-Content-Digest": manifest.digest,
        "ETag": f'"{manifest.digest}"',
    }


async def head_manifest(request: web.Request) -> web.StreamResponse:
    manifest = await _fetch(request)
    headers = _headers(manifest)
    headers["Content-Length"] = str(len(manifest.body))
    return web.Response(status=200, headers=headers)


async def get_manifest(request: web.Request) -> web.StreamResponse:
    manifest = await _fetch(request)
    # A set insert: written later, off the request's path (angos_core.registry.times).
    registry(request).times.pulled(request.match_info["name"], manifest.digest)
    return web.Response(status=200, body=manifest.body, headers=_headers(manifest))


async def put_manifest(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    name, reference = request.match_info["name"], request.match_info["reference"]
    body = await read_limited(request, reg.manifests.max_size)
    result = await reg.manifests.put(
        name,
        reference,
        body,
        request.headers.get("Content-Type"),
        extra_tags=request.query.getall("tag", []),
    )
    headers = CIMultiDict(
        {
            "Location": f"/v2/{name}/manifests/{result.digest}",
            "Docker-Content-Digest": result.digest,
        }
    )
    if result.subject:
        headers["OCI-Subject"] = result.subject
    # The spec: one OCI-Tag header for each tag of the ``tag`` parameters that was set; a
    # client that sees none assumes the parameters were ignored and pushes by tag instead.
    for tag in result.extra_tags:
        headers.add("OCI-Tag", tag)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    await registry(request).manifests.delete(
        request.match_info["name"], request.match_info["reference"]
    )
    return web.Response(status=202)
