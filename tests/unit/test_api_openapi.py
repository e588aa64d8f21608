"""The OpenAPI document and the code agree: the same routes, methods and scopes, and every error answer
a route can give is documented."""

from __future__ import annotations

import json

from hub.api.app import ROUTES, Deps, build_app, spec_path
from hub.api.tokens import SCOPES
from hub.settings import Settings

METHODS = {"get", "post", "put", "patch", "delete"}


def spec() -> dict:
    return json.loads(spec_path().read_text(encoding="utf-8"))


def code_routes() -> set[tuple[str, str]]:
    app = build_app(Deps(Settings(), None, None, None, None, None))  # type: ignore[arg-type]
    return {(r.method, r.resource.canonical) for r in app.router.routes()}


def spec_routes() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, ops in spec()["paths"].items() for m in ops if m in METHODS}


class TestOpenApi:
    def test_every_route_in_code_is_in_the_spec_and_vice_versa(self) -> None:
        assert code_routes() == spec_routes()

    def test_the_route_table_is_what_the_app_serves(self) -> None:
        assert {(r.method, r.path) for r in ROUTES} == code_routes()

    def test_scopes_match(self) -> None:
        """Each operation names in its security requirement exactly the scope the guard checks."""
        paths = spec()["paths"]
        for route in ROUTES:
            op = paths[route.path][route.method.lower()]
            if route.scope is None:
                assert op["security"] == [], route.path
                assert "x-required-scope" not in op
            else:
                assert op["security"] == [{"bearer": [route.scope]}], route.path
                assert op["x-required-scope"] == route.scope

    def test_every_scope_is_known(self) -> None:
        used = {r.scope for r in ROUTES if r.scope}
        assert used <= SCOPES

    def test_protected_routes_document_401_403_429(self) -> None:
        paths = spec()["paths"]
        for route in ROUTES:
            if route.scope:
                responses = paths[route.path][route.method.lower()]["responses"]
                assert {"401", "403", "429"} <= responses.keys(), route.path

    def test_record_reads_document_400_404_503(self) -> None:
        paths = spec()["paths"]
        for route in ROUTES:
            if route.scope == "record:read":
                responses = paths[route.path][route.method.lower()]["responses"]
                assert {"200", "400", "404", "503"} <= responses.keys(), route.path

    def test_every_reference_resolves(self) -> None:
        document = spec()

        def refs(node: object) -> list[str]:
            if isinstance(node, dict):
                return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in refs(v)]
            if isinstance(node, list):
                return [r for v in node for r in refs(v)]
            return []

        for ref in refs(document):
            target: object = document
            for part in ref.removeprefix("#/").split("/"):
                assert isinstance(target, dict) and part in target, ref
                target = target[part]

    def test_operation_ids_are_unique(self) -> None:
        ids = [op["operationId"] for ops in spec()["paths"].values() for m, op in ops.items() if m in METHODS]
        assert len(ids) == len(set(ids))
