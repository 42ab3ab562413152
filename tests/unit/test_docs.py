"""The documentation stays true: settings generated from the code, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

from wahub import settings_reference

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_setting_has_a_description() -> None:
    assert settings_reference.undocumented() == []


def test_the_settings_reference_is_current() -> None:
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")

    assert written == settings_reference.markdown(), (
        "docs/settings.md is stale: run `wahub settings --markdown > docs/settings.md`"
    )


def test_links_stay_inside_the_repository_and_resolve() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{document.name}: {target}")

    assert broken == []
