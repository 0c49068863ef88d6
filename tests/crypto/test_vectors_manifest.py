"""The external vectors are the project's own copy of upstream data: present in a bare clone, and
byte-for-byte what MANIFEST.md says they are (an edited vector would make a known answer lie)."""

from __future__ import annotations

import hashlib
import re

from tests.conftest import VECTORS


def _manifest() -> dict[str, str]:
    text = (VECTORS / "MANIFEST.md").read_text()
    rows = re.findall(r"^\| (\S+\.json) \|.*\| `([0-9a-f]{64})` \|$", text, flags=re.M)
    return dict(rows)


def test_every_vector_file_is_listed_with_its_digest() -> None:
    listed = _manifest()
    on_disk = {str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*.json")}
    assert on_disk == set(listed), "MANIFEST.md must list exactly the vector files present"
    for name, digest in listed.items():
        assert hashlib.sha256((VECTORS / name).read_bytes()).hexdigest() == digest, name


def test_upstream_license_and_commit_are_recorded() -> None:
    assert "Apache License" in (VECTORS / "LICENSE").read_text()
    assert re.search(
        r"C2SP/wycheproof\*\*, commit\s+`[0-9a-f]{40}`", (VECTORS / "MANIFEST.md").read_text()
    )
