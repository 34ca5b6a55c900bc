"""`aisbom scan --format sarif` and `--format cyclonedx`, run as a user runs them.

The SARIF log is validated against the OASIS SARIF 2.1.0 schema
(../shared/schemas/sarif-schema-2.1.0.json, skipped when absent) with
jsonschema, the BOM against the CycloneDX 1.6 schema bundled with
cyclonedx-python-lib. Nothing is downloaded. The malicious samples are bytes
that are only ever scanned, never loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

import aisbom
from aisbom.sarif import RULES

REPO_ROOT = Path(__file__).resolve().parent.parent
SARIF_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json"

MALICIOUS = b"\x80\x02cposix\nsystem\nX\x05\x00\x00\x00echo \x85R."  # posix.system("echo ")
SUSPICIOUS = b"\x80\x02cmylib.models\nNet\n)\x81."  # NEWOBJ of a user class


def run(*args: str, cwd: Path, env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "aisbom", "scan", "--quiet", *args],
        capture_output=True, text=True, timeout=120, cwd=str(cwd), env=full_env,
    )


def scan_doc(fmt: str, *paths: str, cwd: Path, env: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
    p = run("--format", fmt, *paths, cwd=cwd, env=env)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/models holding a clean checkpoint, malicious, suspicious and truncated files."""
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("reports")
    models = root / "models"
    models.mkdir()
    torch.save({"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(models / "clean.pt"))
    (models / "malicious.pkl").write_bytes(MALICIOUS)
    with zipfile.ZipFile(models / "malicious.pt", "w") as z:  # a torch zip whose data.pkl is the payload
        z.writestr("archive/data.pkl", MALICIOUS)
        z.writestr("archive/version", "3\n")
    (models / "suspicious.pkl").write_bytes(SUSPICIOUS)
    clean = (models / "clean.pt").read_bytes()
    (models / "truncated.pt").write_bytes(clean[: len(clean) // 2])
    return root


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- SARIF


@pytest.fixture(scope="module")
def sarif(workdir: Path) -> Dict[str, Any]:
    code, doc = scan_doc("sarif", "models", cwd=workdir)
    assert code == 1
    return doc


def results_for(doc: Dict[str, Any], uri: str) -> List[Dict[str, Any]]:
    return [r for r in doc["runs"][0]["results"]
            if r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == uri]


def validate_sarif(doc: Dict[str, Any]) -> None:
    if not SARIF_SCHEMA.is_file():
        pytest.skip(f"the SARIF schema is not at {SARIF_SCHEMA}")
    import jsonschema

    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


class TestSarif:
    def test_valid_against_the_oasis_schema(self, sarif: Dict[str, Any]) -> None:
        validate_sarif(sarif)

    def test_the_validation_is_real(self, sarif: Dict[str, Any]) -> None:
        broken = json.loads(json.dumps(sarif))
        broken["runs"][0]["results"][0]["level"] = "fatal"
        with pytest.raises(AssertionError):
            validate_sarif(broken)

    def test_one_run_with_the_tool(self, sarif: Dict[str, Any]) -> None:
        assert sarif["version"] == "2.1.0"
        assert len(sarif["runs"]) == 1
        driver = sarif["runs"][0]["tool"]["driver"]
        assert driver["name"] == "aisbom"
        assert driver["version"] == aisbom.__version__

    def test_rules_are_sorted_unique_and_match_the_results(self, sarif: Dict[str, Any]) -> None:
        run_ = sarif["runs"][0]
        ids = [r["id"] for r in run_["tool"]["driver"]["rules"]]
        assert ids == sorted(set(ids))
        assert set(ids) == {r["ruleId"] for r in run_["results"]}
        for result in run_["results"]:
            assert ids[result["ruleIndex"]] == result["ruleId"]

    def test_rule_descriptors_carry_help_and_severity(self, sarif: Dict[str, Any]) -> None:
        rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
        blocked, unknown = rules["blocked-global"], rules["unknown-global"]
        assert blocked["defaultConfiguration"]["level"] == "error"
        assert float(blocked["properties"]["security-severity"]) >= 9.0  # critical on GitHub
        assert unknown["defaultConfiguration"]["level"] == "warning"
        assert 4.0 <= float(unknown["properties"]["security-severity"]) < 7.0  # medium
        for rule in rules.values():
            assert "security" in rule["properties"]["tags"]
            assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
            assert rule["help"]["text"] and rule["help"]["markdown"]
            assert rule["fullDescription"]["text"] == RULES[rule["id"]].full

    def test_malicious_pickle_is_an_error_naming_the_global_and_offset(self, sarif: Dict[str, Any]) -> None:
        (result,) = results_for(sarif, "models/malicious.pkl")
        assert result["ruleId"] == "blocked-global"
        assert result["level"] == "error"
        text = result["message"]["text"]
        assert "posix.system" in text and "byte offset 2" in text
        assert result["properties"]["global"] == "posix.system"
        assert result["properties"]["offset"] == 2
        logical = result["locations"][0]["logicalLocations"]
        assert {"name": "system", "fullyQualifiedName": "posix.system"} in logical

    def test_malicious_checkpoint_names_the_member(self, sarif: Dict[str, Any]) -> None:
        (result,) = results_for(sarif, "models/malicious.pt")
        assert result["level"] == "error"
        text = result["message"]["text"]
        assert "posix.system" in text and "archive/data.pkl" in text and "byte offset 2" in text
        assert result["properties"]["member"] == "archive/data.pkl"
        names = [loc["fullyQualifiedName"] for loc in result["locations"][0]["logicalLocations"]]
        assert names == ["archive/data.pkl", "posix.system"]

    def test_suspicious_is_a_warning(self, sarif: Dict[str, Any]) -> None:
        (result,) = results_for(sarif, "models/suspicious.pkl")
        assert result["ruleId"] == "unknown-global"
        assert result["level"] == "warning"
        assert "mylib.models.Net" in result["message"]["text"]

    def test_truncated_file_is_an_error(self, sarif: Dict[str, Any]) -> None:
        results = results_for(sarif, "models/truncated.pt")
        assert results and all(r["level"] == "error" for r in results)

    def test_clean_file_has_no_results_but_is_an_artifact_with_its_hash(
        self, sarif: Dict[str, Any], workdir: Path
    ) -> None:
        assert results_for(sarif, "models/clean.pt") == []
        artifacts = {a["location"]["uri"]: a for a in sarif["runs"][0]["artifacts"]}
        assert set(artifacts) == {f"models/{p.name}" for p in (workdir / "models").iterdir()}
        for uri, artifact in artifacts.items():
            assert artifact["hashes"]["sha-256"] == sha256_of(workdir / uri)
            assert artifact["length"] == (workdir / uri).stat().st_size

    def test_results_point_at_their_artifact(self, sarif: Dict[str, Any]) -> None:
        artifacts = sarif["runs"][0]["artifacts"]
        for result in sarif["runs"][0]["results"]:
            loc = result["locations"][0]["physicalLocation"]["artifactLocation"]
            assert artifacts[loc["index"]]["location"]["uri"] == loc["uri"]
            assert result["partialFingerprints"]["primaryLocationLineHash"]

    def test_same_findings_as_the_json_report(self, sarif: Dict[str, Any], workdir: Path) -> None:
        _, doc = scan_doc("json", "models", cwd=workdir)
        expected = sorted(
            (file["path"], f["rule"], f["global"], f["member"], f["offset"])
            for file in doc["files"] for f in file["findings"] if f["severity"] != "info"
        )
        got = sorted(
            (r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], r["ruleId"],
             r["properties"].get("global"), r["properties"].get("member"), r["properties"].get("offset"))
            for r in sarif["runs"][0]["results"]
        )
        assert got == expected

    def test_path_outside_the_current_directory_is_a_file_uri(self, workdir: Path, tmp_path: Path) -> None:
        target = workdir / "models" / "malicious.pkl"
        _, doc = scan_doc("sarif", str(target), cwd=tmp_path)
        validate_sarif(doc)
        (artifact,) = doc["runs"][0]["artifacts"]
        assert artifact["location"]["uri"] == target.as_uri()

    def test_odd_file_names_are_percent_encoded(self, tmp_path: Path) -> None:
        (tmp_path / "my model #1.pkl").write_bytes(MALICIOUS)
        _, doc = scan_doc("sarif", ".", cwd=tmp_path)
        validate_sarif(doc)
        assert doc["runs"][0]["artifacts"][0]["location"]["uri"] == "my%20model%20%231.pkl"

    def test_deterministic(self, sarif: Dict[str, Any], workdir: Path) -> None:
        first = run("--format", "sarif", "models", cwd=workdir).stdout
        assert run("--format", "sarif", "models", cwd=workdir).stdout == first
        assert json.loads(first) == sarif

    def test_clean_scan_is_an_empty_valid_log(self, workdir: Path) -> None:
        code, doc = scan_doc("sarif", "models/clean.pt", cwd=workdir)
        assert code == 0
        validate_sarif(doc)
        assert doc["runs"][0]["results"] == [] and doc["runs"][0]["tool"]["driver"]["rules"] == []


# ---------------------------------------------------------------- CycloneDX


@pytest.fixture(scope="module")
def bom(workdir: Path) -> Dict[str, Any]:
    code, doc = scan_doc("cyclonedx", "models", cwd=workdir)
    assert code == 1
    return doc


def validate_bom(doc: Dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    assert error is None, str(error)


def component(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    found: List[Dict[str, Any]] = [c for c in doc["components"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def props(item: Dict[str, Any], name: str) -> List[str]:
    return [p["value"] for p in item.get("properties", []) if p["name"] == name]


def vulns_of(doc: Dict[str, Any], name: str) -> List[Dict[str, Any]]:
    ref = component(doc, name)["bom-ref"]
    return [v for v in doc.get("vulnerabilities", []) if any(a["ref"] == ref for a in v["affects"])]


class TestCycloneDX:
    def test_valid_against_the_cyclonedx_1_6_schema(self, bom: Dict[str, Any]) -> None:
        validate_bom(bom)

    def test_the_validation_is_real(self, bom: Dict[str, Any]) -> None:
        broken = json.loads(json.dumps(bom))
        broken["components"][0]["type"] = "model"
        with pytest.raises(AssertionError):
            validate_bom(broken)

    def test_header(self, bom: Dict[str, Any]) -> None:
        assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6" and bom["version"] == 1
        assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", bom["serialNumber"])
        (tool,) = bom["metadata"]["tools"]["components"]
        assert (tool["name"], tool["version"]) == ("aisbom", aisbom.__version__)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", bom["metadata"]["timestamp"])

    def test_one_model_component_per_file_with_its_hash(self, bom: Dict[str, Any], workdir: Path) -> None:
        files = sorted((workdir / "models").iterdir())
        assert sorted(c["name"] for c in bom["components"]) == [p.name for p in files]
        refs = [c["bom-ref"] for c in bom["components"]]
        assert len(set(refs)) == len(refs)
        for path in files:
            c = component(bom, path.name)
            assert c["type"] == "machine-learning-model"
            assert c["hashes"] == [{"alg": "SHA-256", "content": sha256_of(path)}]
            assert props(c, "aisbom:path") == [f"models{os.sep}{path.name}"]
        assert props(component(bom, "clean.pt"), "aisbom:format") == ["torch-zip"]
        assert props(component(bom, "clean.pt"), "aisbom:verdict") == ["clean"]
        assert props(component(bom, "malicious.pkl"), "aisbom:verdict") == ["malicious"]
        assert props(component(bom, "malicious.pkl"), "aisbom:global") == ["posix.system"]

    def test_clean_file_has_no_vulnerabilities(self, bom: Dict[str, Any]) -> None:
        assert vulns_of(bom, "clean.pt") == []

    def test_malicious_findings_are_critical_vulnerabilities(self, bom: Dict[str, Any]) -> None:
        for name, member in (("malicious.pkl", None), ("malicious.pt", "archive/data.pkl")):
            (v,) = vulns_of(bom, name)
            assert v["id"] == "AISBOM-blocked-global"
            assert v["source"] == {"name": "aisbom"}
            assert [(r["severity"], r["method"]) for r in v["ratings"]] == [("critical", "other")]
            assert "posix.system" in v["description"]
            assert v["cwes"] == [502]
            assert props(v, "aisbom:global") == ["posix.system"]
            assert props(v, "aisbom:offset") == ["2"]
            assert props(v, "aisbom:member") == ([member] if member else [])

    def test_suspicious_is_medium_and_error_is_high(self, bom: Dict[str, Any]) -> None:
        (v,) = vulns_of(bom, "suspicious.pkl")
        assert v["ratings"][0]["severity"] == "medium"
        assert "mylib.models.Net" in v["description"]
        truncated = vulns_of(bom, "truncated.pt")
        assert truncated and {v["ratings"][0]["severity"] for v in truncated} == {"high"}

    def test_every_vulnerability_affects_a_component(self, bom: Dict[str, Any]) -> None:
        refs = {c["bom-ref"] for c in bom["components"]}
        vuln_refs = [v["bom-ref"] for v in bom["vulnerabilities"]]
        assert len(set(vuln_refs)) == len(vuln_refs)
        for v in bom["vulnerabilities"]:
            assert [a["ref"] for a in v["affects"]] and all(a["ref"] in refs for a in v["affects"])

    def test_deterministic_but_for_serial_and_timestamp(self, bom: Dict[str, Any], workdir: Path) -> None:
        _, again = scan_doc("cyclonedx", "models", cwd=workdir)
        first = json.loads(json.dumps(bom))  # a copy: the fixture is shared
        assert again["serialNumber"] != first["serialNumber"]
        for doc in (again, first):
            del doc["serialNumber"], doc["metadata"]["timestamp"]
        assert again == first

    def test_source_date_epoch_fixes_the_timestamp(self, workdir: Path) -> None:
        _, doc = scan_doc("cyclonedx", "models/clean.pt", cwd=workdir, env={"SOURCE_DATE_EPOCH": "0"})
        assert doc["metadata"]["timestamp"] == "1970-01-01T00:00:00Z"

    def test_a_path_given_twice_keeps_bom_refs_unique(self, workdir: Path) -> None:
        _, doc = scan_doc("cyclonedx", "models/malicious.pkl", "models/malicious.pkl", cwd=workdir)
        validate_bom(doc)
        assert len({c["bom-ref"] for c in doc["components"]}) == 2

    def test_a_clean_scan_is_a_valid_bom_without_vulnerabilities(self, workdir: Path) -> None:
        code, doc = scan_doc("cyclonedx", "models/clean.pt", cwd=workdir)
        assert code == 0
        validate_bom(doc)
        assert "vulnerabilities" not in doc


# ---------------------------------------------------------------- exit codes and output files


@pytest.mark.parametrize("fmt", ["sarif", "cyclonedx"])
class TestExitCodes:
    @pytest.mark.parametrize("name, fail_on, expected", [
        ("clean.pt", None, 0),
        ("malicious.pkl", None, 1),
        ("malicious.pkl", "malicious", 1),
        ("suspicious.pkl", None, 1),
        ("suspicious.pkl", "malicious", 0),
        ("truncated.pt", "malicious", 1),  # an error verdict always fails
    ])
    def test_as_documented(self, workdir: Path, fmt: str, name: str, fail_on: Optional[str], expected: int) -> None:
        extra = ["--fail-on", fail_on] if fail_on else []
        p = run("--format", fmt, *extra, f"models/{name}", cwd=workdir)
        assert p.returncode == expected, p.stderr
        json.loads(p.stdout)

    def test_missing_path_is_a_usage_error(self, workdir: Path, fmt: str) -> None:
        p = run("--format", fmt, "models/nope.pt", cwd=workdir)
        assert p.returncode == 2 and p.stdout == ""

    def test_output_file(self, workdir: Path, tmp_path: Path, fmt: str) -> None:
        out = tmp_path / f"report.{fmt}.json"
        p = run("--format", fmt, "-o", str(out), "models", cwd=workdir)
        assert p.returncode == 1 and p.stdout == ""
        doc = json.loads(out.read_text(encoding="utf-8"))
        assert ("runs" in doc) if fmt == "sarif" else (doc["bomFormat"] == "CycloneDX")


# ---------------------------------------------------------------- the rule table


def _documented_rules() -> Dict[str, str]:
    text = (REPO_ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    rules: Dict[str, str] = {}
    for rule, severity in re.findall(r"^\| `([a-z-]+)` \| (\w+)", text, re.M):
        rules.setdefault(rule, severity)
    return rules


def _rules_in_code() -> Set[str]:
    found: Set[str] = set()
    for c in (REPO_ROOT / "csrc").glob("*.c"):
        found |= set(re.findall(r'aisb_report_finding\([^;]*?"([a-z][a-z-]*)"', c.read_text(encoding="utf-8"), re.S))
    for py in (REPO_ROOT / "aisbom").glob("*.py"):
        found |= set(re.findall(r'Finding\(\s*"([a-z][a-z-]*)"', py.read_text(encoding="utf-8")))
    return found


def test_every_documented_rule_is_described_with_its_severity() -> None:
    documented = _documented_rules()
    assert len(documented) > 20
    for rule, severity in documented.items():
        assert rule in RULES, f"{rule} is in docs/rules.md but not in aisbom.sarif.RULES"
        assert RULES[rule].severity.label == severity, rule
    assert set(RULES) - set(documented) == set()


def test_every_rule_the_scanner_reports_is_described() -> None:
    if not (REPO_ROOT / "csrc").is_dir():
        pytest.skip("no C sources next to the tests")
    in_code = _rules_in_code()
    assert {"parse-error", "polyglot", "decompression", "unreadable"} <= in_code  # the search finds them
    assert in_code - set(RULES) == set()
