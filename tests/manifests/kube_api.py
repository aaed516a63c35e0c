"""Just enough of a Kubernetes API server on 127.0.0.1 for the real kubectl to run `get KINDS -A -o json`
against: legacy discovery (`/api`, `/apis`, each group version's resources) and a list per resource, built
from the objects and kinds it is given. Any other kind does not exist on it, as a CRD that was never
installed, so kubectl answers as it does on such a cluster."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

CLUSTER_SCOPED = frozenset({"Namespace"})


def plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"  # NetworkPolicy
    return lower + ("es" if lower.endswith("s") else "s")  # Prometheus


class _Api:
    def __init__(self, objects: list[dict[str, Any]], kinds: list[tuple[str, str]]) -> None:
        # group version -> plural -> (kind, items)
        self.resources: dict[str, dict[str, tuple[str, list[dict[str, Any]]]]] = {}
        for api_version, kind in kinds:
            self.resources.setdefault(api_version, {})[plural(kind)] = (kind, [])
        for obj in objects:
            versioned = self.resources.setdefault(obj["apiVersion"], {})
            versioned.setdefault(plural(obj["kind"]), (obj["kind"], []))[1].append(obj)

    def answer(self, path: str) -> dict[str, Any] | None:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = [gv for gv in self.resources if "/" in gv]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(gv) for gv in groups]}
        parts = path.strip("/").split("/")
        version = "/".join(parts[1:2] if parts[0] == "api" else parts[1:3])
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if parts[0] not in ("api", "apis") or version not in self.resources:
            return None
        resources = self.resources.get(version, {})
        if not rest:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": version,
                "resources": [
                    {"name": name, "singularName": "", "namespaced": kind not in CLUSTER_SCOPED, "kind": kind}
                    | {"verbs": ["get", "list"]}
                    for name, (kind, _) in resources.items()
                ],
            }
        if len(rest) == 1 and rest[0] in resources:
            kind, items = resources[rest[0]]
            return {"kind": f"{kind}List", "apiVersion": version, "metadata": {"resourceVersion": "1"}, "items": items}
        return None

    @staticmethod
    def _group(group_version: str) -> dict[str, Any]:
        name, version = group_version.split("/")
        preferred = {"groupVersion": group_version, "version": version}
        return {"name": name, "versions": [preferred], "preferredVersion": preferred}


def kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig whose current context is an API server on 127.0.0.1:`port`, with no credentials."""
    cluster = {"name": "local", "cluster": {"server": f"http://127.0.0.1:{port}"}}
    context = {"name": "local", "context": {"cluster": "local", "user": "nobody"}}
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "contexts": [context]}
    path.write_text(yaml.safe_dump(config | {"current-context": "local", "users": [{"name": "nobody", "user": {}}]}))
    return path


@contextmanager
def serving(objects: list[dict[str, Any]], kinds: list[tuple[str, str]], home: Path) -> Iterator[Path]:
    """Serves `objects`, whose kinds it has, and the `kinds` (apiVersion, kind) it has besides, with no objects;
    yields a kubeconfig (under `home`) whose current context is this server."""
    api = _Api(objects, kinds)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = api.answer(urlsplit(self.path).path)
            status = 200 if body is not None else 404
            if body is None:
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kubeconfig(home / "kubeconfig", server.server_port)
    finally:
        server.shutdown()
        server.server_close()
