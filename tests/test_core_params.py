"""The parameter catalogue, distributions and profiles."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaoslab.params import (
    CATALOGUE,
    PROFILES,
    ParamSet,
    ParseError,
    ProfileConflict,
    UnknownParameter,
    UnknownProfile,
    format_seconds,
    lookup,
    parse_duration,
    parse_value,
)
from chaoslab.params.dists import Empirical, Fixed, LogNormal, Sum, Uniform

CORE = Path(__file__).resolve().parent.parent / "chaoslab"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("40s", 40.0), ("300ms", 0.3), ("2m", 120.0), ("1.5h", 5400.0), ("250us", 250e-6), ("0", 0.0)],
)
def test_durations_carry_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["40", "40 sec", "fast", "4d", ""])
def test_bad_durations_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_duration(bad)


def test_distribution_syntax() -> None:
    assert parse_value("uniform(1s, 3s)") == Uniform(1.0, 3.0)
    ln = parse_value("lognormal(median=2s, p95=8s)")
    assert isinstance(ln, LogNormal) and ln.median == 2.0 and ln.p95 == 8.0
    assert parse_value("empirical(1s, 2s, 500ms)") == Empirical((1.0, 2.0, 0.5))
    s = parse_value("2s + uniform(0s, 1s)")
    assert isinstance(s, Sum) and s.bounds() == (2.0, 3.0)
    assert parse_value([1, 2], unit="count") == Empirical((1.0, 2.0))
    with pytest.raises(ParseError, match="unknown distribution"):
        parse_value("gamma(1s, 2s)")
    with pytest.raises(ParseError, match="takes"):
        parse_value("uniform(1s)")


def test_lognormal_matches_its_quantiles() -> None:
    d = LogNormal(2.0, 8.0)
    rng = np.random.default_rng(1)
    x = np.array([d.sample(rng) for _ in range(40_000)])
    assert np.median(x) == pytest.approx(2.0, rel=0.03)
    assert np.quantile(x, 0.95) == pytest.approx(8.0, rel=0.05)


@given(st.floats(min_value=1e-3, max_value=1e5, allow_nan=False))
def test_format_then_parse_round_trips(x: float) -> None:
    assert parse_duration(format_seconds(x)) == pytest.approx(x, rel=1e-5, abs=1e-6)


def test_every_parameter_has_a_source_versions_and_unit() -> None:
    assert len(CATALOGUE) > 40
    for key, p in CATALOGUE.items():
        assert re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", key), key
        assert p.source.strip() and p.versions.strip() and p.doc.strip(), key
        assert p.unit in {"s", "count", "ratio", "1/s", "bool", "choice"}


def test_every_key_the_model_reads_is_in_the_catalogue() -> None:
    """No default hides in a mechanism: every p.draw/flag/count/choice key is catalogued."""
    pattern = re.compile(r"""\.(?:draw|flag|count|choice)\(\s*"([a-z0-9_.]+)"\s*\)""")
    used: set[str] = set()
    for path in CORE.rglob("*.py"):
        if "live" in path.parts or "cli" in path.parts:
            continue
        used |= set(pattern.findall(path.read_text()))
    assert used, "found no parameter reads"
    missing = sorted(k for k in used if k not in CATALOGUE)
    assert not missing, missing


def test_profiles_of_the_article_era_and_today() -> None:
    old = ParamSet.resolve("k8s-1.10")
    new = ParamSet.resolve("k8s-1.32")
    g = "kube_controller_manager.node_monitor_grace_period"
    assert old[g] == Fixed(40.0) and new[g] == Fixed(50.0)
    assert ParamSet.resolve("k8s-1.31")[g] == Fixed(40.0)
    assert old["kubelet.node_lease"] is False and new["kubelet.node_lease"] is True
    assert old["kube_controller_manager.taint_based_evictions"] is False
    assert old["kube_proxy.iptables_min_sync_period"] == Fixed(0.0)
    assert new["kube_proxy.iptables_min_sync_period"] == Fixed(1.0)
    assert "profile k8s-1.10" in old.sources[g]


def test_lb_profiles() -> None:
    nlb = ParamSet.resolve(["aws-nlb"])
    assert nlb["lb.interval"] == Fixed(30.0) and nlb["lb.fall"] == Fixed(2.0)
    assert nlb["lb.fail_open"] is True
    hap = ParamSet.resolve()
    assert hap["lb.interval"] == Fixed(2.0) and hap["lb.fall"] == Fixed(3.0)
    assert hap["lb.rise"] == Fixed(2.0)
    assert {"haproxy", "aws-nlb", "gcp", "k8s-1.10", "k8s-1.31", "k8s-1.32"} <= set(PROFILES)


def test_overrides_win_and_say_so() -> None:
    ps = ParamSet.resolve("k8s-1.10", {"lb.interval": "1s"})
    assert ps["lb.interval"] == Fixed(1.0)
    assert ps.sources["lb.interval"] == "experiment"
    assert ps.differs_from_profile() == {"lb.interval": Fixed(1.0)}


def test_unknown_keys_and_profiles_are_errors_with_suggestions() -> None:
    with pytest.raises(UnknownParameter, match="did you mean lb.interval"):
        lookup("lb.intreval")
    with pytest.raises(UnknownProfile, match="k8s-1.32"):
        ParamSet.resolve("k8s-1.23")
    with pytest.raises(ProfileConflict):
        ParamSet.resolve(["k8s-1.10", "k8s-1.32"])


def test_kinds_are_checked() -> None:
    with pytest.raises(ParseError, match="no unit"):
        lookup("lb.interval").parse(2)
    with pytest.raises(ParseError, match="plain number"):
        lookup("lb.fall").parse("3s")
    with pytest.raises(ParseError, match="flag"):
        lookup("lb.fail_open").parse("maybe")
    with pytest.raises(ParseError, match="ratio"):
        lookup("kube_controller_manager.unhealthy_zone_threshold").parse(1.5)
    with pytest.raises(ParseError, match="negative"):
        lookup("lb.interval").parse("-1s")
