"""Platform exports: each platform's connector, generated from manifest.yaml and schemas/, never edited.

Every exporter is a pure function ``(manifest, base_url) -> {relative path: text}``; writing the files is
done here, once for all. Same input, same bytes: files are written in a fixed order with fixed JSON
formatting, and nothing depends on the clock or the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connector.description.manifest import Manifest

DEFAULT_BASE_URL = "https://connector.example.com"


def _exporters() -> dict[str, tuple[str, Callable[[Manifest, str], dict[str, str]]]]:
    from connector.exports import elasticio, guide, make, n8n, openapi, powerautomate, zapier

    return {
        "openapi": ("OpenAPI 3.1 document of the service (also served at /openapi.json)", openapi.files),
        "powerautomate": (
            "Power Automate / Logic Apps custom connector (OpenAPI 2.0 with x-ms extensions)",
            powerautomate.files,
        ),
        "zapier": ("Zapier CLI app (zapier-platform-core 19), with tests that run offline", zapier.files),
        "make": ("Make custom app: connection, modules, attached webhooks", make.files),
        "elasticio": ("elastic.io component: component.json and its modules, with tests", elasticio.files),
        "n8n": ("n8n community-node package (TypeScript): credentials, action node, trigger node", n8n.files),
        "guide": ("Zoho Flow and Blendr.io: a step-by-step guide, with the OpenAPI document", guide.files),
    }


def platforms() -> dict[str, str]:
    """Platform name -> what its export is."""
    return {name: about for name, (about, _) in _exporters().items()}


def render(platform: str, manifest: Manifest, base_url: str = DEFAULT_BASE_URL) -> dict[str, str]:
    exporters = _exporters()
    if platform not in exporters:
        raise KeyError(f"unknown platform {platform!r}; known: {', '.join(exporters)}")
    return exporters[platform][1](manifest, base_url.rstrip("/"))


def write(platform: str, manifest: Manifest, out_dir: Path, base_url: str = DEFAULT_BASE_URL) -> list[Path]:
    """Write the export into ``out_dir`` (created if needed); the paths written, in order."""
    written = []
    for relative, text in sorted(render(platform, manifest, base_url).items()):
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
