"""Teraslice's asset routes (seed 001), at /v1 and at the root.

    POST   /assets                    upload a zip (application/octet-stream) -> {"_id": id}
    GET    /assets                    ?from=0&size=100&sort=_created:desc
    GET    /assets/{name}             the assets of a name (or the one with this id)
    GET    /assets/{name}/{version}   one name and version
    DELETE /assets/{id}               -> {"_id": id}

`blocking` is accepted on POST for Teraslice's clients and changes nothing: a Lambda has no
"after the answer" to finish work in, so every upload is checked, stored and recorded
before the answer, and every error is in the response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.api.errors import api_errors, json_response, query_bool, query_int
from chalicelib.bootstrap import get_container
from chalicelib.domain.assets import Asset
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.timefmt import iso
from chalicelib.services.assets import AssetService

ZIP_TYPES = ["application/octet-stream", "application/zip", "application/x-zip-compressed"]
# bodies of these types reach a Lambda as text, which mangles a zip: answered 415 in the API's
# error shape (rather than Chalice's own 415 body)
TEXT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


class UnsupportedMediaType(InvalidInput):
    status_code = 415
    code = "unsupported_media_type"


DEFAULT_SIZE = 100


def asset_view(a: Asset) -> dict[str, Any]:
    return {"_created": iso(a.created), "name": a.name, "version": a.version, "id": a.asset_id}


def make_blueprint(import_name: str) -> Blueprint:
    bp = Blueprint(import_name)

    def params() -> Mapping[str, str]:
        return bp.current_request.query_params or {}

    def service() -> AssetService:
        return get_container().assets

    @bp.route("/assets", methods=["POST"], content_types=ZIP_TYPES + TEXT_TYPES)
    @api_errors
    def upload_asset() -> Response:
        query_bool(params(), "blocking", False)
        declared = bp.current_request.headers.get("content-type", "")
        if declared.split(";")[0].strip().lower() not in ZIP_TYPES:
            reason = f"got {declared!r}; send the zip as application/octet-stream"
            raise UnsupportedMediaType(
                f"Content-Type: {reason}", [{"field": "Content-Type", "reason": reason}]
            )
        raw = bp.current_request.raw_body
        data = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
        asset, created = service().upload(data)
        return json_response({"_id": asset.asset_id}, 201 if created else 200)

    @bp.route("/assets", methods=["GET"])
    @api_errors
    def list_assets() -> Response:
        start = query_int(params(), "from") or 0
        size = query_int(params(), "size")
        size = DEFAULT_SIZE if size is None else size
        items = service().listing(start, size, params().get("sort"))
        return json_response([asset_view(a) for a in items])

    @bp.route("/assets/{asset}", methods=["GET"])
    @api_errors
    def assets_named(asset: str) -> Response:
        return json_response([asset_view(a) for a in service().named(asset)])

    @bp.route("/assets/{asset}/{version}", methods=["GET"])
    @api_errors
    def asset_version(asset: str, version: str) -> Response:
        return json_response([asset_view(a) for a in service().named(asset, version)])

    @bp.route("/assets/{asset}", methods=["DELETE"])
    @api_errors
    def delete_asset(asset: str) -> Response:
        return json_response({"_id": service().delete(asset).asset_id})

    return bp
