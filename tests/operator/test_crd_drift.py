"""The committed CRDs (crds/*.yaml) must be exactly what the models generate today."""

from __future__ import annotations

from pathlib import Path

import yaml

from flowpod_operator.crds import crdgen

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    rendered = crdgen.render_all()
    assert sorted(rendered) == ["flowpod.io_deployments.yaml", "flowpod.io_flowruns.yaml"]
    for name, text in rendered.items():
        path = CRDS / name
        assert path.is_file(), f"{path} is missing: run `make crds`"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from flowpod_operator.crds.resources: run `make crds` "
            f"(python -m flowpod_operator.crds) and commit the result")


def test_no_other_crd_files_linger() -> None:
    # A renamed CRD would otherwise leave its old file behind for `kubectl apply -f crds/`.
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(crdgen.render_all())


def test_rendered_files_are_plain_yaml_without_anchors() -> None:
    for text in crdgen.render_all().values():
        assert "&id" not in text and "*id" not in text
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


def test_check_mode_reports_stale_files(tmp_path: Path, capsys) -> None:
    assert crdgen.main(["--output-dir", str(tmp_path), "--check"]) == 1
    assert "run `make crds`" in capsys.readouterr().err
    assert crdgen.main(["--output-dir", str(tmp_path)]) == 0
    assert crdgen.main(["--output-dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "flowpod.io_flowruns.yaml").write_text("# hand edit\n")
    assert crdgen.main(["--output-dir", str(tmp_path), "--check"]) == 1
