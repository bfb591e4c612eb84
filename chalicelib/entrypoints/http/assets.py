"""Teraslice's asset routes (seed 001), at /v1 and at the root.

    POST   /assets                    upload a zip (application/octet-stream) -> {"_id": id}
    GET    /assets                    ?from=0&size=100&sort=_created:desc
    GET    /assets/{name}             the assets of a name (or the one with this id)
    GET    /assets/{name}/{version}   one name and version
    DELETE /assets/{id}               -> {"_id": id}

Uploading and deleting need the admin role; any authenticated principal may list them.

`blocking` is accepted on POST for Teraslice's clients and changes nothing: a Lambda has no
"after the answer" to finish work in, so every upload is checked, stored and recorded
before the answer, and every error is in the response.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.domain.assets import Asset
from chalicelib.domain.timefmt import iso
from chalicelib.entrypoints.http.errors import json_response, query_bool, query_int
from chalicelib.entrypoints.http.routing import Routes, query
from chalicelib.services.assets import AssetService

# API Gateway hands bodies of these types to the Lambda as they are (binary); any other type
# would reach it as text, which mangles a zip: 415
ZIP_TYPES = ["application/octet-stream", "application/zip", "application/x-zip-compressed"]
DEFAULT_SIZE = 100


def asset_view(a: Asset) -> dict[str, Any]:
    return {"_created": iso(a.created), "name": a.name, "version": a.version, "id": a.asset_id}


routes = Routes()


def _service() -> AssetService:
    return get_container().assets


@routes("/assets", ("POST",), ZIP_TYPES, admin=True)
def upload_asset(request: Request) -> Response:
    query_bool(query(request), "blocking", False)
    raw = request.raw_body
    data = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
    asset, created = _service().upload(data)
    return json_response({"_id": asset.asset_id}, 201 if created else 200)


@routes("/assets")
def list_assets(request: Request) -> Response:
    params = query(request)
    start = query_int(params, "from") or 0
    size = query_int(params, "size")
    size = DEFAULT_SIZE if size is None else size
    items = _service().listing(start, size, params.get("sort"))
    return json_response([asset_view(a) for a in items])


@routes("/assets/{asset}")
def assets_named(request: Request, asset: str) -> Response:
    return json_response([asset_view(a) for a in _service().named(asset)])


@routes("/assets/{asset}/{version}")
def asset_version(request: Request, asset: str, version: str) -> Response:
    return json_response([asset_view(a) for a in _service().named(asset, version)])


@routes("/assets/{asset}", ("DELETE",), admin=True)
def delete_asset(request: Request, asset: str) -> Response:
    return json_response({"_id": _service().delete(asset).asset_id})
