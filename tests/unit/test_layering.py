"""Layering rules from STYLE.md, checked on the source: Faust only in stream/app, core is pure."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "stream"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(under: Path = PKG):
    return sorted(p for p in under.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_faust_only_in_the_app_layer(path):
    if (PKG / "app") in path.parents:
        return
    assert not imports_of(path) & {"faust", "mode", "aiokafka"}, f"{path} imports Faust outside stream/app"


@pytest.mark.parametrize("path", modules(PKG / "core") or [None], ids=str)
def test_core_is_pure(path):
    if path is None:
        pytest.skip("no core modules yet")
    banned = {"faust", "mode", "aiokafka", "confluent_kafka", "redis", "prometheus_client", "os"}
    assert not imports_of(path) & banned, f"{path} imports I/O or framework modules"


def test_modules_stay_small():
    big = [(str(p.relative_to(PKG)), n) for p in modules() if (n := len(p.read_text().splitlines())) > 450]
    assert not big, f"modules over ~400 lines, split them: {big}"
