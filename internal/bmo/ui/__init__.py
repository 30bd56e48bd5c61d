"""The web console's files (layer 1, pure data): `index.html`, `app.js`, `app.css`, written by
hand (no build step, nothing fetched from outside the machine), served by `bmo.server.ui` at
`GET /ui` and `/ui/<name>`.

`bmo.server.ui` imports this package as a module and reads its files with
`importlib.resources.files(ui)`, so the frozen binary finds them (build.spec puts them under
bmo/ui/; pyproject.toml's package-data does it for installs). `ASSETS` is the whole list of what
may be served: a name not in it is a 404, never a path looked up on disk.
"""

from __future__ import annotations

PAGE = "index.html"
# name -> Content-Type
ASSETS: dict[str, str] = {
    PAGE: "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
