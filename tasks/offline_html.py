"""HTML reports that render with no network.

The Great Expectations Data Docs pages load their scripts, styles and fonts from CDNs
(jQuery, Bootstrap, bootstrap-table, which draws the index's list of validations, Font
Awesome, Vega); with no network a page has no styles and an empty list. After GX builds
the pages, :func:`localize` copies those files, at the exact versions the pages name,
into the site's own ``static/vendor/`` folder and points every page at its copy (relative
links, so the site can be moved or opened from ``file://``). The files come from the npm
packages ``make install`` puts beside the venv (``web/package.json``, found at
``SEQCAST_WEB_ASSETS`` or ``<venv>/share/seqcast-web/node_modules``). The GX logos are
the copies GX writes into ``static/images/`` itself.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

# the address a page names -> the package file (under node_modules) that holds the same version
ASSETS = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/dist/umd/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/dist/bootstrap-table.min.js",
    # 1.19.1 ships the filter-control script unminified only; the 1.19.0 stylesheet is the same file in 1.19.1
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
    # Font Awesome's stylesheet finds its fonts at ../webfonts/: both folders are copied
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "@fortawesome/fontawesome-free/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
}
FOLDERS = ["@fortawesome/fontawesome-free/webfonts"]
LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.[\w.-]+\.amazonaws\.com/[\w-]+\.png(?:\?[^\"']*)?")
# an integrity hash and crossorigin belong to the CDN's copy; a local file needs neither
CHECKS = re.compile(r'\s+(?:integrity="[^"]*"|crossorigin="[^"]*")')
LOADS = re.compile(r'<(?:script|link|img|iframe)\b[^>]*?(?:src|href)="(https?://[^"]+)"', re.I)


class MissingAssets(FileNotFoundError):
    """The npm packages the reports load are not installed: what to run."""


def assets_root() -> Path:
    env = os.environ.get("SEQCAST_WEB_ASSETS")
    return Path(env) if env else Path(sys.prefix) / "share" / "seqcast-web" / "node_modules"


def vendor(site: Path, root: Path | None = None) -> Path:
    """Copy every asset into ``site/static/vendor/`` (once per build); returns that folder."""
    root = root or assets_root()
    missing = [rel for rel in [*ASSETS.values(), *FOLDERS] if not (root / rel).exists()]
    if missing:
        raise MissingAssets(f"the web assets of the HTML reports are not installed in {root} (missing "
                            f"{', '.join(missing[:3])}...): run `make install` (npm ci of web/package.json)")
    out = site / "static" / "vendor"
    for rel in ASSETS.values():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, out / rel)
    for rel in FOLDERS:
        shutil.copytree(root / rel, out / rel, dirs_exist_ok=True)
    return out


def rewrite(html: str, page: Path, site: Path) -> str:
    """A page's CDN addresses replaced by relative links to the site's copies."""
    up = os.path.relpath(site, page.parent).replace(os.sep, "/")
    for url, rel in ASSETS.items():
        html = html.replace(f'"{url}"', f'"{up}/static/vendor/{rel}"')
    html = LOGO.sub(f"{up}/static/images/logo-long.png", html)
    return CHECKS.sub("", html)


def localize(site: Path, root: Path | None = None) -> int:
    """Make every page of a built site load only local files; returns the number of pages."""
    site = Path(site)
    vendor(site, root)
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        page.write_text(rewrite(text, page, site), encoding="utf-8")
    return len(pages)


def network_loads(html: str) -> list[str]:
    """The addresses a page would fetch from the network (scripts, styles, images, frames)."""
    return LOADS.findall(html)
