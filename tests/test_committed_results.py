"""Every committed results folder says in its validate.txt what `dilmbench validate` says of it now."""
import pytest

from conftest import load_script

vc = load_script("benchmarks/tools/validate_committed.py")


@pytest.mark.parametrize("folder", vc.folders(), ids=lambda f: str(f.relative_to(vc.ROOT)))
def test_validate_txt_is_what_validate_says_now(folder):
    assert (folder / "validate.txt").is_file(), f"run python benchmarks/tools/validate_committed.py ({folder} has none)"
    assert (folder / "validate.txt").read_text() == vc.said(folder), "stale: python benchmarks/tools/validate_committed.py"


def test_there_are_committed_results_to_check():
    assert len(vc.folders()) >= 3


@pytest.mark.parametrize("folder", vc.folders(), ids=lambda f: str(f.relative_to(vc.ROOT)))
def test_every_committed_folder_declares_its_grid(folder):
    from dilmbench.grid import declared_runs

    assert (folder / "grid.yaml").is_file(), f"{folder} holds runs but declares no grid (grid.yaml)"
    assert declared_runs(folder / "grid.yaml")  # it reads, and declares something
