"""DESIGN §4: `domain` imports neither `api` nor `integrations` nor FastAPI nor httpx."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = ("api", "integrations", "fastapi", "httpx", "starlette", "uvicorn")
DOMAIN = Path(__file__).parents[2] / "domain"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_domain_stays_independent() -> None:
    offenders = [
        f"{path.relative_to(DOMAIN.parent)} imports {name}"
        for path in sorted(DOMAIN.rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []
    assert len(list(DOMAIN.rglob("*.py"))) > 10  # the walk really saw the package


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from api.app import create_app\nimport httpx\n")
    assert _imports(bad) == ["api.app", "httpx"]


def test_every_context_has_the_same_files() -> None:
    contexts = [p for p in DOMAIN.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert contexts
    for context in contexts:
        for name in ("models.py", "rules.py", "service.py"):
            assert (context / name).exists(), f"{context.name} lacks {name}"
