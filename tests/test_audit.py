"""Dependency audit: the pinned set against the in-repo advisory table, PyPI's vulnerability data, pip-audit."""

from __future__ import annotations

import importlib.metadata
import json
import urllib.request

import pytest
from packaging.version import Version

from tools import audit_requirements as audit

FILES = [audit.REPO_ROOT / name for name in audit.REQUIREMENT_FILES]


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen(f"{audit.PYPI}/pip/json", timeout=10).close()
        return True
    except OSError:
        return False


def test_the_advisory_table_is_well_formed():
    advisories = json.loads(audit.ADVISORIES.read_text())["advisories"]
    assert any(a["package"] == "gradio" for a in advisories)
    for advisory in advisories:
        assert Version(advisory["fixed"]) and advisory["id"] and advisory["summary"]
        assert advisory["source"].startswith("https://"), advisory["id"]


def test_no_pin_is_below_a_fixed_version_in_the_table():
    report = audit.audit(FILES, online=False)
    assert {"gradio", "torch", "diffusers", "transformers"} <= set(report.pins)
    assert not report.table_findings, report.table_findings


def test_the_table_flags_pins_from_before_the_fixes(tmp_path):
    old = tmp_path / "requirements.txt"
    old.write_text("gradio==4.10.0\ntorch==2.5.1  # comment\nnumpy==2.4.6\n")
    findings = " ".join(audit.audit([old], online=False).table_findings)
    assert "CVE-2023-51449" in findings and "CVE-2026-59806" in findings and "CVE-2025-32434" in findings
    assert "numpy" not in findings


def test_the_installed_gradio_is_the_pinned_one_and_past_every_file_route_advisory():
    pinned = audit.read_pins(FILES)["gradio"]
    assert importlib.metadata.version("gradio") == pinned
    advisories = json.loads(audit.ADVISORIES.read_text())["advisories"]
    latest_fix = max(Version(a["fixed"]) for a in advisories if a["package"] == "gradio")
    assert Version(pinned) >= latest_fix


@pytest.mark.slow
@pytest.mark.skipif(not pypi_reachable(), reason="PyPI's JSON API is not reachable from this machine")
def test_pypi_lists_no_vulnerability_for_the_pins_it_covers():
    report = audit.audit(FILES, online=True)
    print(audit.format_report(report))
    assert not report.online_findings, report.online_findings
    assert not report.pip_audit.startswith("found"), report.pip_audit


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI's JSON API is not reachable from this machine")
def test_the_online_check_reports_a_release_pypi_knows_is_vulnerable():
    """pycrypto 2.6.1 is its last release and has published advisories: the check must see them."""
    found = audit.pypi_vulnerabilities("pycrypto", "2.6.1")
    assert found, "PyPI's vulnerability data was not read"
