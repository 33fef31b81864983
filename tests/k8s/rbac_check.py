"""Check API calls recorded by the fake server against deploy/rbac.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"


def _rules() -> list[tuple[str | None, dict]]:
    """(namespace or None for cluster-wide, rule) for every rule bound in the manifest."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    out = []
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
        out += [(ns, r) for r in role["rules"]]
    return out


def _request(method: str, raw: str) -> tuple[str, str, str, str | None, str]:
    """(verb, apiGroup, resource[/sub], namespace, path) of a REST call."""
    url = urlsplit(raw)
    q = parse_qs(url.query)
    m = re.fullmatch(
        r"/(?:api/v1|apis/([^/]+)/[^/]+)(?:/namespaces/([^/]+))?/([a-z]+)"
        r"(?:/([^/]+))?(?:/([a-z]+))?",
        url.path,
    )
    if not m:
        return ("get", "", "", None, url.path)
    group, ns, res, name, sub = m.groups()
    resource = f"{res}/{sub}" if sub else res
    verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}.get(method)
    if verb is None:
        verb = "get" if name else ("watch" if q.get("watch") == ["true"] else "list")
    return verb, group or "", resource, ns, url.path


def denied(calls: list[tuple[str, str]]) -> list[str]:
    """Calls deploy/rbac.yaml does not allow."""
    rules = _rules()
    bad = []
    for method, raw in calls:
        verb, group, resource, ns, path = _request(method, raw)
        ok = False
        for rns, r in rules:
            if "nonResourceURLs" in r:
                ok = ok or (path.rstrip("/") in r["nonResourceURLs"] and verb in r["verbs"])
                continue
            if "*" in r["verbs"] or "*" in r.get("resources", []):
                raise AssertionError("wildcard in deploy/rbac.yaml")
            if (
                group in r["apiGroups"]
                and resource in r["resources"]
                and verb in r["verbs"]
                and (rns is None or rns == ns)
            ):
                ok = True
        if not ok:
            bad.append(f"{method} {raw} ({verb} {group}/{resource} in {ns})")
    return bad
