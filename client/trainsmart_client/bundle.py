"""The package as one zip file, for images that have Python but not this package.

The operator ships these bytes to a pod (a ConfigMap mounted read-only) and runs
`python3 trainsmart-client.pyz wrap ... -- COMMAND`; with the file on PYTHONPATH, `import trainsmart_client`
works too (zipimport). The archive is built from the package's own source files, deterministically (fixed
timestamps and order), so the same package always gives the same bytes: the operator can compare
ConfigMaps instead of rewriting them, and a cached build is as good as a fresh one.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

PACKAGE = "trainsmart_client"
BUNDLE_FILE_NAME = "trainsmart-client.pyz"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_MAIN = (
    "# Runs `trainsmart_client` from this zip file: python3 trainsmart-client.pyz wrap ... -- COMMAND\n"
    "import sys\n\n"
    "from trainsmart_client.wrap_command import main\n\n"
    "sys.exit(main())\n"
)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def build_zipapp() -> bytes:
    """A zipapp (`#!/usr/bin/env python3` line, a `__main__.py`, the package's .py files, subpackages such
    as the framework callbacks included: they import their framework only when used)."""
    package_dir = Path(__file__).resolve().parent
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_entry("__main__.py"), _MAIN)
        for path in sorted(package_dir.rglob("*.py")):
            if "__pycache__" not in path.parts:
                name = path.relative_to(package_dir).as_posix()
                archive.writestr(_entry(f"{PACKAGE}/{name}"), path.read_bytes())
        archive.writestr(_entry(f"{PACKAGE}/py.typed"), b"")
    return buffer.getvalue()
