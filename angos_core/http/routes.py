"""The route table. Repository names hold slashes, so they are matched as ``.+`` and the
fixed suffix (``/blobs/...``, ``/manifests/...``) tells the endpoints apart; names are
validated against the spec's grammar by the domain before any key is built."""

from __future__ import annotations

from aiohttp import web

from angos_core.http import blob_handlers as blobs
from angos_core.http import listing_handlers as listing
from angos_core.http import manifest_handlers as manifests
from angos_core.http import upload_handlers as uploads

NAME = "{name:.+}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2/", listing.base, name="base")  # add_get answers HEAD too
    r.add_get("/v2", listing.base, name="base-bare")
    r.add_route("GET", "/v2/_catalog", listing.catalog, name="catalog")
    r.add_route("GET", f"/v2/{NAME}/tags/list", listing.tags_list, name="tags")
    r.add_route(
        "GET", f"/v2/{NAME}/referrers/{{digest:[^/]+}}", listing.referrers, name="referrers"
    )

    manifest = r.add_resource(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", name="manifest")
    manifest.add_route("GET", manifests.get_manifest)
    manifest.add_route("HEAD", manifests.head_manifest)
    manifest.add_route("PUT", manifests.put_manifest)
    manifest.add_route("DELETE", manifests.delete_manifest)

    # Every route is named: the names are what angos_core.policy.actions maps to actions.
    r.add_route("POST", f"/v2/{NAME}/blobs/uploads/", uploads.start_upload, name="uploads")
    r.add_route("POST", f"/v2/{NAME}/blobs/uploads", uploads.start_upload, name="uploads-bare")
    upload = r.add_resource(f"/v2/{NAME}/blobs/uploads/{{uuid:[^/]+}}", name="upload")
    upload.add_route("GET", uploads.upload_status)
    upload.add_route("PATCH", uploads.patch_upload)
    upload.add_route("PUT", uploads.finish_upload)
    upload.add_route("DELETE", uploads.cancel_upload)

    blob = r.add_resource(f"/v2/{NAME}/blobs/{{digest:[^/]+}}", name="blob")
    blob.add_route("GET", blobs.get_blob)
    blob.add_route("HEAD", blobs.head_blob)
    blob.add_route("DELETE", blobs.delete_blob)
