"""Check the pinned requirements for known vulnerabilities with whatever source this machine can reach.

python -m tools.audit_requirements [--offline] [requirements files...]

Three sources, each reported for what it covered:
1. security/advisories.json, a small table kept in the repo (always; gradio's file-route, upload and SSRF
   advisories and torch.load's): a pin below an advisory's fixed version is a finding.
2. PyPI's own vulnerability data (the data pip-audit's default service reads): the per-version JSON API where
   it answers, else the project JSON, which carries the data for the latest release only, so a pin that is
   not the latest release is reported as "not checked online".
3. pip-audit against OSV, where pip-audit is installed and OSV resolves.
Exits 1 when any source reports a vulnerability, else 0.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
ADVISORIES = REPO_ROOT / "security" / "advisories.json"
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "requirements-packs.txt")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
PYPI = "https://pypi.org/pypi"


@dataclass
class AuditReport:
    pins: dict[str, str]
    table_findings: list[str] = field(default_factory=list)
    online_findings: list[str] = field(default_factory=list)
    checked_online: list[str] = field(default_factory=list)
    not_checked_online: list[str] = field(default_factory=list)
    pip_audit: str = "not run"

    @property
    def vulnerable(self) -> bool:
        return bool(self.table_findings or self.online_findings or self.pip_audit.startswith("found"))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(files: list[Path]) -> dict[str, str]:
    """{normalised name: pinned version} for every `name==version` line."""
    pins = {}
    for path in files:
        for line in path.read_text().splitlines():
            if match := PIN.match(line):
                pins[normalise(match.group(1))] = match.group(2)
    return pins


def table_findings(pins: dict[str, str], advisories: list[dict]) -> list[str]:
    """Advisories from the in-repo table whose fixed version is above the pin."""
    findings = []
    for advisory in advisories:
        pinned = pins.get(normalise(advisory["package"]))
        if pinned is not None and Version(pinned) < Version(advisory["fixed"]):
            findings.append(
                f"{advisory['package']}=={pinned}: {advisory['id']} ({advisory['summary']}), "
                f"fixed in {advisory['fixed']}"
            )
    return findings


def _get_json(url: str, timeout: float) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def pypi_vulnerabilities(name: str, version: str, timeout: float = 20.0) -> list[str] | None:
    """Vulnerability ids PyPI lists for name==version, or None where PyPI's data does not cover that version."""
    data = _get_json(f"{PYPI}/{name}/{version}/json", timeout)
    if data is None:  # the per-version API is not served here; the project JSON covers the latest release
        data = _get_json(f"{PYPI}/{name}/json", timeout)
        if data is None or data["info"]["version"] != version:
            return None
    return [v["id"] for v in data.get("vulnerabilities") or [] if not v.get("withdrawn")]


def run_pip_audit(files: list[Path]) -> str:
    """pip-audit against OSV where both are available; otherwise say why it did not run."""
    if shutil.which("pip-audit") is None:
        return "not run: pip-audit is not installed"
    try:
        socket.getaddrinfo("api.osv.dev", 443)
    except OSError:
        return "not run: OSV (api.osv.dev) does not resolve from this machine"
    command = ["pip-audit", "--no-deps", "--disable-pip", "--progress-spinner", "off", "-s", "osv"]
    for path in files:
        command += ["-r", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode == 0:
        return "clean: pip-audit (OSV) found no known vulnerability"
    return "found: " + (result.stdout + result.stderr).strip()[-3000:]


def audit(files: list[Path], online: bool = True) -> AuditReport:
    report = AuditReport(pins=read_pins(files))
    advisories = json.loads(ADVISORIES.read_text())["advisories"]
    report.table_findings = table_findings(report.pins, advisories)
    if not online:
        report.pip_audit = "not run: --offline"
        return report
    for name, version in sorted(report.pins.items()):
        try:
            found = pypi_vulnerabilities(name, version)
        except OSError as error:  # PyPI unreachable: say so, do not guess
            report.not_checked_online.append(f"{name}=={version} (PyPI unreachable: {type(error).__name__})")
            continue
        if found is None:
            report.not_checked_online.append(f"{name}=={version} (not the latest release; per-version API not served)")
        else:
            report.checked_online.append(f"{name}=={version}")
            report.online_findings += [f"{name}=={version}: {vid}" for vid in found]
    report.pip_audit = run_pip_audit(files)
    return report


def format_report(report: AuditReport) -> str:
    lines = [f"Audited {len(report.pins)} pinned packages."]
    lines.append(
        f"- In-repo advisory table ({ADVISORIES.relative_to(REPO_ROOT)}): "
        + ("; ".join(report.table_findings) or "no pin below a fixed version")
    )
    lines.append(
        f"- PyPI vulnerability data, checked for {len(report.checked_online)}: "
        + ("; ".join(report.online_findings) or "none reported")
    )
    if report.not_checked_online:
        lines.append(
            f"- Not checked online ({len(report.not_checked_online)}): " + ", ".join(report.not_checked_online)
        )
    lines.append(f"- pip-audit: {report.pip_audit}")
    lines.append("RESULT: " + ("VULNERABLE" if report.vulnerable else "no known vulnerability in the sources above"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="requirements files (default: the repo's three)")
    parser.add_argument("--offline", action="store_true", help="only the in-repo advisory table")
    args = parser.parse_args(argv)
    files = args.files or [REPO_ROOT / name for name in REQUIREMENT_FILES]
    report = audit(files, online=not args.offline)
    print(format_report(report))
    return 1 if report.vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
