"""The checked-in generated protobuf code matches what tools/genprotos.py produces now."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_genprotos() -> ModuleType:
    path = ROOT / "tools" / "genprotos.py"
    spec = importlib.util.spec_from_file_location("_genprotos_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_points_at_this_checkout() -> None:
    genprotos = load_genprotos()
    assert genprotos.PROTOS == ROOT / "protos"
    assert genprotos.OUT == ROOT / "conveyor" / "_proto"
    names = [p.relative_to(genprotos.PROTOS).as_posix() for p in genprotos.proto_files()]
    assert names == ["conveyor/v1/job.proto", "examples/basic.proto", "examples/shop.proto"]


def test_checked_in_protos_are_fresh(tmp_path: Path) -> None:
    genprotos = load_genprotos()
    genprotos.generate(tmp_path)
    fresh = genprotos.generated_files(tmp_path)
    checked_in = genprotos.generated_files(genprotos.OUT)
    assert "examples/basic_pb2.py" in fresh
    assert "examples/basic_pb2.pyi" in fresh
    assert "conveyor/v1/job_pb2.py" in fresh
    missing = sorted(set(fresh) - set(checked_in))
    extra = sorted(set(checked_in) - set(fresh))
    changed = sorted(
        name for name in set(fresh) & set(checked_in) if fresh[name] != checked_in[name]
    )
    assert fresh == checked_in, (
        "conveyor/_proto is stale; run `nox -s protos` and commit the result "
        f"(missing: {missing}, not generated any more: {extra}, changed: {changed})"
    )
