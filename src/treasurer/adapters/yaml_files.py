"""Reading and writing org files as YAML (safe loader only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from treasurer.domain.errors import OrgFileInvalid


def load_org_file(path: str | Path) -> dict[str, Any]:
    """Load an org file; YAML syntax errors name the file, line and column."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise OrgFileInvalid(f"{file}: cannot read the org file ({exc.strerror})") from None
    return load_org_text(text, source=str(file))


def load_org_text(text: str, *, source: str) -> dict[str, Any]:
    """Parse org file text; YAML syntax errors name the source, line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise OrgFileInvalid(f"{source}{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise OrgFileInvalid(f"{source}: the top level must be a mapping with org, agents, ...")
    return data


def dump_org_file(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
