"""/v2/, the API version header, and JSON errors for unknown routes and methods."""

from __future__ import annotations

from tests.support.api import Api, error_code


async def test_base_endpoint(api: Api) -> None:
    for path in ("/v2/", "/v2"):
        resp = await api.get(path)
        assert resp.status == 200
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert await resp.json() == {}
        resp = await api.head(path)
        assert resp.status == 200
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_unknown_route_is_json_404(api: Api) -> None:
    resp = await api.get("/nothing/here")
    assert resp.status == 404
    assert await error_code(resp) == "UNSUPPORTED"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_wrong_method_is_json_405(api: Api) -> None:
    resp = await api.request("POST", "/v2/_catalog")
    assert resp.status == 405
    assert await error_code(resp) == "UNSUPPORTED"
    assert "GET" in resp.headers["Allow"]


async def test_errors_carry_the_api_version_header(api: Api) -> None:
    resp = await api.get("/v2/Upper/tags/list")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
