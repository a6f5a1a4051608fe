"""The referrers API: OCI-Subject, listing, artifactType filter, unknown subjects, deletes."""

from __future__ import annotations

import json

from angos_core.oci import mediatypes as mt
from tests.support.api import Api, descriptor, digest_of, error_code

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
SBOM = "application/spdx+json"
SIG = "application/vnd.example.signature"


async def push_artifact(
    api: Api,
    name: str,
    subject: tuple[str, bytes] | None,
    artifact_type: str | None,
    payload: bytes,
    config_type: str = EMPTY_TYPE,
    annotations: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    await api.push_blob(name, EMPTY)
    await api.push_blob(name, payload)
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(EMPTY, config_type),
        "layers": [descriptor(payload, "application/octet-stream")],
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    if subject:
        manifest["subject"] = descriptor(subject[1], mt.OCI_MANIFEST)
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest).encode()
    digest = digest_of(body)
    resp = await api.put_manifest(name, digest, body)
    assert resp.status == 201, await resp.text()
    if subject:
        assert resp.headers["OCI-Subject"] == subject[0]
    else:
        assert "OCI-Subject" not in resp.headers
    return digest, body


async def referrers(
    api: Api, name: str, subject: str, artifact_type: str | None = None
) -> dict[str, object]:
    params = {"artifactType": artifact_type} if artifact_type else {}
    resp = await api.get(f"/v2/{name}/referrers/{subject}", params=params)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == mt.OCI_INDEX
    if artifact_type:
        assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    else:
        assert "OCI-Filters-Applied" not in resp.headers
    index: dict[str, object] = await resp.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == mt.OCI_INDEX
    return index


async def test_listing_and_filter(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    sbom, sbom_body = await push_artifact(
        api, "lib/app", subject, SBOM, b"sbom", annotations={"org.example.kind": "sbom"}
    )
    sig, sig_body = await push_artifact(api, "lib/app", subject, None, b"sig", config_type=SIG)
    await push_artifact(api, "lib/app", None, SBOM, b"unrelated")

    index = await referrers(api, "lib/app", subject[0])
    found = {m["digest"]: m for m in index["manifests"]}  # type: ignore[attr-defined]
    assert found == {
        sbom: {
            "mediaType": mt.OCI_MANIFEST,
            "digest": sbom,
            "size": len(sbom_body),
            "artifactType": SBOM,
            "annotations": {"org.example.kind": "sbom"},
        },
        sig: {
            "mediaType": mt.OCI_MANIFEST,
            "digest": sig,
            "size": len(sig_body),
            "artifactType": SIG,
        },
    }
    filtered = await referrers(api, "lib/app", subject[0], SBOM)
    assert [m["digest"] for m in filtered["manifests"]] == [sbom]  # type: ignore[attr-defined]
    none = await referrers(api, "lib/app", subject[0], "application/none")
    assert none["manifests"] == []


async def test_subject_not_pushed_yet(api: Api) -> None:
    ghost_body = b'{"never":"pushed"}'
    ghost = digest_of(ghost_body)
    ref, _ = await push_artifact(api, "lib/app", (ghost, ghost_body), SBOM, b"early")
    index = await referrers(api, "lib/app", ghost)
    assert [m["digest"] for m in index["manifests"]] == [ref]  # type: ignore[attr-defined]


async def test_no_referrers_is_an_empty_index(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    assert (await referrers(api, "lib/app", subject[0]))["manifests"] == []
    assert (await referrers(api, "never/pushed", digest_of(b"x")))["manifests"] == []


async def test_referrers_are_per_repository(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    await push_artifact(api, "lib/app", subject, SBOM, b"sbom")
    assert (await referrers(api, "other", subject[0]))["manifests"] == []


async def test_delete_referrer(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    ref, _ = await push_artifact(api, "lib/app", subject, SBOM, b"sbom")
    assert (await api.request("DELETE", f"/v2/lib/app/manifests/{ref}")).status == 202
    assert (await referrers(api, "lib/app", subject[0]))["manifests"] == []


async def test_index_as_referrer(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    child = await api.push_image("lib/app", None, layer=b"child")
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [descriptor(child[1], mt.OCI_MANIFEST)],
        "subject": descriptor(subject[1], mt.OCI_MANIFEST),
    }
    body = json.dumps(index).encode()
    resp = await api.put_manifest("lib/app", digest_of(body), body, mt.OCI_INDEX)
    assert resp.status == 201
    assert resp.headers["OCI-Subject"] == subject[0]
    found = (await referrers(api, "lib/app", subject[0]))["manifests"]
    assert found == [
        {
            "mediaType": mt.OCI_INDEX,
            "digest": digest_of(body),
            "size": len(body),
            "artifactType": "application/vnd.example.bundle",
        }
    ]


async def test_bad_input(api: Api) -> None:
    resp = await api.get("/v2/lib/app/referrers/sha256:nothex")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await api.get(f"/v2/Lib/referrers/{digest_of(b'x')}")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"


async def test_sha512_subject(api: Api) -> None:
    subject_body = b'{"some":"manifest"}'
    subject = digest_of(subject_body, "sha512")
    await api.push_blob("lib/app", EMPTY)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": SBOM,
        "config": descriptor(EMPTY, EMPTY_TYPE),
        "layers": [],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": len(subject_body)},
    }
    body = json.dumps(manifest).encode()
    resp = await api.put_manifest("lib/app", digest_of(body), body)
    assert resp.status == 201
    assert resp.headers["OCI-Subject"] == subject
    index = await referrers(api, "lib/app", subject)
    assert [m["digest"] for m in index["manifests"]] == [digest_of(body)]  # type: ignore[attr-defined]
