"""Runs MONAI Label's own Python client (``monailabel.client.MONAILabelClient``, from PyPI) against a server.

Run by ``test_monailabel_client.py`` with the client's virtual environment (``.venv-monailabel``; MONAI Label pins
an old torch and MONAI, so it never enters medannot's environment). Reads a plan from stdin::

    {"url": BASE_URL, "tmpdir": DIR, "password": PW, "calls": [{"as": USER, "op": OP, "args": [...]}, ...]}

and prints one JSON list with ``{"ok": result}`` or ``{"status": HTTP status, "error": message}`` per call. Each
user logs in once through the client (``auth_enabled`` then ``auth_token``), as Slicer's module does.
"""

import hashlib
import json
import re
import sys
import urllib.request

from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException


def download_image(client, image_id):
    """What Slicer does for Next Sample: GET <server>/datastore/image?image=ID with the client's headers."""
    url = f"{client.get_server_url()}/datastore/image?image={image_id}"
    request = urllib.request.Request(url, headers=dict(client._headers))
    with urllib.request.urlopen(request, timeout=60) as response:
        data = response.read()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "content_type": response.headers.get("content-type"), "cache_control": response.headers.get("cache-control")}


def main():
    plan = json.load(sys.stdin)
    clients = {}
    results = []
    for call in plan["calls"]:
        user = call.get("as")
        if user not in clients:
            client = MONAILabelClient(plan["url"], tmpdir=plan["tmpdir"], client_id=f"driver-{user}")
            if user and client.auth_enabled():
                try:
                    client.update_auth(client.auth_token(user, call.get("password", plan["password"])))
                except MONAILabelClientException as exc:
                    results.append({"status": exc.status_code, "error": str(exc.msg)[:500], "login": True})
                    continue
            clients[user] = client
        client = clients[user]
        op, args = call["op"], call.get("args", [])
        try:
            if op == "download_image":
                value = download_image(client, *args)
            else:
                value = getattr(client, op)(*args)
            results.append({"ok": value})
        except MONAILabelClientException as exc:
            status = exc.status_code
            if status is None:
                found = re.search(r"Status: (\d+)", str(exc.msg))
                status = int(found.group(1)) if found else None
            results.append({"status": status, "error": str(exc.msg)[:500]})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
