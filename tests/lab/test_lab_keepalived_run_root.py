"""lab down removes keepalived's run root only if this lab created it and it is empty."""

from pathlib import Path

from chaoslab.live.lab.netns import LabState, cleanup


def _state(tmp_path: Path, root: Path) -> LabState:
    d = tmp_path / "lab"
    d.mkdir()
    ns_dir = root / "cl-u-n1"
    ns_dir.mkdir(parents=True)
    info = {"keepalived_run_dirs": [str(ns_dir)], "keepalived_run_root": str(root)}
    return LabState(name="u", prefix="cl-u", design="ingress-vip-vrrp", dir=str(d), info=info)


def test_root_created_by_the_lab_goes_but_another_labs_dir_keeps_it(tmp_path: Path) -> None:
    root = tmp_path / "run-keepalived"
    cleanup(_state(tmp_path, root))
    assert not root.exists()
    other = tmp_path / "other"
    other.mkdir()
    root2 = other / "run-keepalived"
    st = _state(other, root2)
    (root2 / "cl-x-n1").mkdir()  # another lab's keepalived still runs there
    cleanup(st)
    assert (root2 / "cl-x-n1").is_dir()
