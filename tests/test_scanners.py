"""Secret scanners find troopauth token values, and only those.

detect-secrets runs for real, through its Python API and its command line,
with ``troopauth.scanners`` loaded as a custom plugin file (the way its
documentation describes), over temporary files that hold real values made by
``troopauth.tokens``, near-misses (one character changed, a wrong prefix, one
character too few or too many) and random ``cpt_pat_`` strings of the right
length. Every real value is found; nothing else is.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.settings import Settings, transient_settings
from hypothesis import given
from hypothesis import strategies as st

from troopauth import scanners, tokens

from .test_docs import python_blocks

ALPHABET = tokens.ALPHABET
SECRET_TYPE = "troopauth token"  # noqa: S105 (a label, not a password)
PLUGIN_FILE = str(Path(scanners.__file__).resolve())
PLUGIN = {"name": "TroopAuthTokenDetector", "path": f"file://{PLUGIN_FILE}"}
#: detect-secrets' default filters (heuristics), named so a test never depends
#: on what an earlier test left in its global settings.
DEFAULT_FILTERS = [
    {"path": path}
    for path in sorted(Settings().filters)
    if path not in Settings.DEFAULT_FILTERS
]

#: How a value sits in a file: (file name, the lines, with {v} for the value).
SHAPES: dict[str, list[str]] = {
    "settings.py": [
        'TOKEN = "{v}"',
        "TOKEN = '{v}'",
        'headers = {{"Authorization": "Bearer {v}"}}',
        "{v}",
        "token = {v}  # a comment after it",
        "fallback = {v}",
    ],
    "config.yaml": [
        "token: {v}",
        'quoted: "{v}"',
        "single: '{v}'",
        "nested:",
        "  api:",
        "    token: {v}",
    ],
    # A YAML file whose only strings are list items (see TestYamlLists).
    "list.yaml": [
        "tokens:",
        "  - {v}",
        "  - '{v}'",
    ],
    "data.json": [
        "{{",
        '  "token": "{v}",',
        '  "tokens": ["{v}", "{v}"]',
        "}}",
    ],
    ".env": [
        "TROOPAUTH_TOKEN={v}",
        "export TROOPAUTH_TOKEN={v}",
        'QUOTED="{v}"',
        "SINGLE='{v}'",
    ],
    "notes.txt": [
        "{v} starts this line",
        "and this one ends with {v}",
        "in a sentence, {v}.",
        "(in brackets: {v})",
        "curl -H 'Authorization: Bearer {v}' https://api.example.org/x",
        "https://api.example.org/?token={v}&page=2",
        "two on one line: {v} {v}",
    ],
}


def scan_paths(paths: Iterable[Path], *, root: Path) -> list[tuple[str, int, str]]:
    """Scan *paths* with detect-secrets, only this plugin enabled, default filters.

    Returns (file name relative to *root*, line number, secret value) for each
    secret of the troopauth type.
    """
    config = {"plugins_used": [PLUGIN], "filters_used": DEFAULT_FILTERS}
    # detect-secrets caches the mapping of secret types to plugin classes;
    # clear it so that the custom plugin file is loaded for this scan.
    get_mapping_from_secret_type_to_class.cache_clear()
    try:
        with transient_settings(config):
            collection = SecretsCollection()
            for path in paths:
                collection.scan_file(str(path))
    finally:
        get_mapping_from_secret_type_to_class.cache_clear()
    found = []
    for filename, secret in collection:
        assert secret.type == SECRET_TYPE  # only this plugin was enabled
        assert secret.secret_value is not None
        rel = Path(filename).relative_to(root).as_posix()
        found.append((rel, secret.line_number, secret.secret_value))
    return sorted(found)


def plant(root: Path) -> list[tuple[str, int, str]]:
    """Write every shape of SHAPES under *root*, each {v} a fresh real value.

    Returns what a scanner should find: (file, line number, value).
    """
    expected = set()
    for name, lines in SHAPES.items():
        written = []
        for number, line in enumerate(lines, start=1):
            parts = line.split("{v}")
            if len(parts) == 1:
                written.append(line.format())
                continue
            out = parts[0]
            for part in parts[1:]:
                value = tokens.new_value()
                expected.add((name, number, value))
                out += value + part
            written.append(out.replace("{{", "{").replace("}}", "}"))
        (root / name).write_text("\n".join(written) + "\n", encoding="ascii")
    return sorted(expected)


def one_changed(value: str, index: int) -> str:
    """*value* with the character at *index* replaced by the next base62 digit."""
    other = ALPHABET[(ALPHABET.index(value[index]) + 1) % 62]
    return value[:index] + other + value[index + 1 :]


def near_misses(value: str) -> list[str]:
    """Strings one step away from the real *value*; none is a valid token."""
    out = [one_changed(value, i) for i in range(len(tokens.PREFIX), len(value))]
    body = value[len(tokens.PREFIX) :]
    out += [
        "cpt_pak_" + body,  # wrong prefix
        "cpt-pat-" + body,
        "CPT_PAT_" + body,
        "ghp_pat_" + body,
        "cpt_pat" + body,  # the prefix one character short
        value[:-1],  # one character short
        value[:20] + value[21:],
        value + "7",  # one character long
        value[:20] + "7" + value[20:],
        "x" + value,  # glued to a longer run
        "_" + value,
        value + "_x",
        "0" * 20 + value + "0" * 20,
    ]
    return out


# -- the module and its extra ---------------------------------------------


class TestModule:
    """troopauth.scanners as a module."""

    def test_import_without_detect_secrets_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        """Without detect-secrets, importing troopauth.scanners says which extra."""
        for name in list(sys.modules):
            if name == "detect_secrets" or name.startswith("detect_secrets."):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "detect_secrets", None)  # blocks the import
        monkeypatch.delitem(sys.modules, "troopauth.scanners")
        with pytest.raises(ImportError, match=r"pip install 'troopauth\[scanners\]'"):
            importlib.import_module("troopauth.scanners")

    def test_candidate_is_the_documented_expression(self):
        """The plugin's regex is the reference checker's, character for character."""
        page = (Path(__file__).parent.parent / "docs" / "token-format.md").read_text(
            encoding="utf-8"
        )
        assert f'CANDIDATE = re.compile(r"{scanners.CANDIDATE.pattern}")' in page

    def test_checksum_comes_from_troopauth_tokens(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        """The plugin confirms with troopauth.tokens.has_valid_checksum itself."""
        value = tokens.new_value()
        detector = scanners.TroopAuthTokenDetector()
        assert list(detector.analyze_string(f"x = {value}")) == [value]
        monkeypatch.setattr(tokens, "has_valid_checksum", lambda _value: False)
        assert list(detector.analyze_string(f"x = {value}")) == []


# -- detect-secrets' Python API, only this plugin ---------------------------


class TestDetectSecretsApi:
    """detect-secrets' SecretsCollection with only this plugin enabled."""

    def test_finds_every_real_value_in_every_shape(self, tmp_path: Path):
        """Each value in code, YAML, JSON, .env and text is found on its line."""
        expected = plant(tmp_path)
        assert len(expected) == 27
        found = scan_paths(sorted(tmp_path.iterdir()), root=tmp_path)
        assert found == expected

    def test_near_misses_are_not_reported(self, tmp_path: Path):
        """One character changed, a wrong prefix, too short or long: nothing found."""
        misses = []
        for _ in range(25):
            misses += near_misses(tokens.new_value())
        assert not any(tokens.has_valid_checksum(m) for m in misses)
        path = tmp_path / "misses.env"
        path.write_text(
            "".join(f"TOKEN_{i}={m}\n" for i, m in enumerate(misses)), "ascii"
        )
        assert scan_paths([path], root=tmp_path) == []
        # The same file with the real values beside the near-misses: only they.
        reals = [tokens.new_value() for _ in range(25)]
        with path.open("a", encoding="ascii") as f:
            f.writelines(f'REAL_{i} = "{v}"\n' for i, v in enumerate(reals))
        found = scan_paths([path], root=tmp_path)
        assert sorted(v for _, _, v in found) == sorted(reals)

    def test_many_random_strings_are_not_reported(self, tmp_path: Path):
        """10,000 random cpt_pat_ + 36 base62 strings: none reported."""
        rng = random.Random(11)
        strings = [
            tokens.PREFIX + "".join(rng.choices(ALPHABET, k=36)) for _ in range(10_000)
        ]
        assert not any(tokens.has_valid_checksum(s) for s in strings)
        path = tmp_path / "random.txt"
        path.write_text("".join(f'k{i}: "{s}"\n' for i, s in enumerate(strings)))
        assert scan_paths([path], root=tmp_path) == []

    @given(
        random_strings=st.lists(
            st.text(alphabet=ALPHABET, min_size=36, max_size=36).map(
                lambda body: tokens.PREFIX + body
            ),
            max_size=40,
        ),
        random_parts=st.lists(
            st.text(alphabet=ALPHABET, min_size=30, max_size=30), max_size=5
        ),
        separator=st.sampled_from([" ", "\n", ", ", '"\n"', "=", ";\t"]),
    )
    def test_reports_exactly_the_valid_values(
        self, random_strings, random_parts, separator
    ):
        """Among random 44-character strings and real values, exactly the real."""
        reals = [tokens.PREFIX + p + tokens.checksum(p) for p in random_parts]
        everything = [*random_strings, *reals]
        random.Random(len(everything)).shuffle(everything)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            path = root / "mixed.txt"
            path.write_text(separator.join(everything) + "\n", encoding="ascii")
            found = {v for _, _, v in scan_paths([path], root=root)}
        valid = {s for s in everything if tokens.has_valid_checksum(s)}
        assert set(reals) <= valid
        assert found == valid

    def test_indirect_reference_filter_hides_calls(self, tmp_path: Path):
        """detect-secrets skips a value passed in a call (is_indirect_reference)."""
        value = tokens.new_value()
        path = tmp_path / "client.py"
        path.write_text(f'client = Client(token="{value}")\n', encoding="ascii")
        assert scan_paths([path], root=tmp_path) == []
        path.write_text(f'TOKEN = "{value}"\n', encoding="ascii")
        assert scan_paths([path], root=tmp_path) == [("client.py", 1, value)]


class TestYamlLists:
    """What detect-secrets itself does with YAML (the same for every plugin)."""

    def test_list_item_beside_mapping_values_is_not_seen(self, tmp_path: Path):
        """A YAML file with a key: value is read through its parser: lists unseen."""
        mapped, listed = tokens.new_value(), tokens.new_value()
        path = tmp_path / "config.yaml"
        path.write_text(f"token: {mapped}\nmore:\n  - {listed}\n", "ascii")
        assert scan_paths([path], root=tmp_path) == [("config.yaml", 1, mapped)]
        # With the file read as plain text, the list item is found.
        path.rename(tmp_path / "config.txt")
        found = scan_paths([tmp_path / "config.txt"], root=tmp_path)
        assert found == [("config.txt", 1, mapped), ("config.txt", 3, listed)]


# -- detect-secrets' command line, every plugin -----------------------------


def run_cli(root: Path, *extra: str) -> dict[str, list[dict[str, object]]]:
    """``detect-secrets scan --plugin <troopauth.scanners> --all-files .``: results."""
    command = [
        sys.executable,
        "-m",
        "detect_secrets",
        "scan",
        "--plugin",
        PLUGIN_FILE,
        "--all-files",
        *extra,
        ".",
    ]
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, check=True, timeout=120
    )
    baseline = json.loads(done.stdout)
    names = [p["name"] for p in baseline["plugins_used"]]
    assert "TroopAuthTokenDetector" in names
    results: dict[str, list[dict[str, object]]] = baseline["results"]
    return results


def sha1(value: str) -> str:
    """How a detect-secrets baseline records a secret."""
    return hashlib.sha1(value.encode("ascii")).hexdigest()  # noqa: S324


class TestDetectSecretsCli:
    """The detect-secrets command, as the documentation tells users to run it."""

    def test_every_real_value_reported_beside_the_default_plugins(self, tmp_path: Path):
        """With all built-in plugins on too, each real value has a troopauth entry."""
        expected = plant(tmp_path)
        misses = near_misses(tokens.new_value())
        (tmp_path / "misses.txt").write_text("\n".join(misses) + "\n", "ascii")
        results = run_cli(tmp_path)
        ours = sorted(
            (name, entry["line_number"], entry["hashed_secret"])
            for name, entries in results.items()
            for entry in entries
            if entry["type"] == SECRET_TYPE
        )
        assert ours == sorted((n, line, sha1(v)) for n, line, v in expected)
        # Other plugins may flag the near-misses; this plugin never does.
        assert "misses.txt" not in {name for name, _, _ in ours}

    def test_only_this_plugin(self, tmp_path: Path):
        """With every built-in plugin disabled, only troopauth entries remain."""
        expected = plant(tmp_path)
        get_mapping_from_secret_type_to_class.cache_clear()
        try:
            builtin = [
                cls.__name__
                for cls in get_mapping_from_secret_type_to_class().values()
                if cls.__name__ != "TroopAuthTokenDetector"
            ]
        finally:  # a mapping cached without the plugin would hide it later
            get_mapping_from_secret_type_to_class.cache_clear()
        assert len(builtin) >= 20
        disabled = [arg for name in builtin for arg in ("--disable-plugin", name)]
        results = run_cli(tmp_path, *disabled)
        entries = [e for es in results.values() for e in es]
        assert {e["type"] for e in entries} == {SECRET_TYPE}
        assert len(entries) == len(expected)

    def test_baseline_brings_the_plugin_to_the_hook(self, tmp_path: Path):
        """A baseline made with --plugin makes detect-secrets-hook use it too."""
        (tmp_path / "clean.env").write_text("A=1\n", "ascii")
        baseline = subprocess.run(
            [sys.executable, "-m", "detect_secrets", "scan", "--plugin", PLUGIN_FILE],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        (tmp_path / ".secrets.baseline").write_text(baseline, "utf-8")
        value = tokens.new_value()
        (tmp_path / "leak.env").write_text(f"TOKEN={value}\n", "ascii")
        (tmp_path / "typo.env").write_text(f"TOKEN={one_changed(value, 20)}\n")
        hook = [sys.executable, "-m", "detect_secrets.pre_commit_hook"]
        hook += ["--baseline", ".secrets.baseline"]
        for name, flagged in (("leak.env", True), ("typo.env", False)):
            done = subprocess.run(
                [*hook, name],
                check=False,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            said = done.stdout + done.stderr
            assert ("Secret Type: troopauth token" in said) is flagged, said
            if flagged:
                assert done.returncode == 1
                assert f"Location:    {name}:1" in said


# -- the gitleaks rule of docs/token-format.md --------------------------------
#
# Debian 12 (bookworm), which CI runs on, has no gitleaks package, so gitleaks
# itself does not run here: the rule is taken from the page and its
# expression run with Python's re in ASCII mode (RE2's \b is ASCII), behind
# gitleaks' keyword and entropy steps; the page's confirm step does the rest.

TOKEN_FORMAT = Path(__file__).resolve().parent.parent / "docs" / "token-format.md"
_TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def gitleaks_config() -> dict[str, Any]:
    """The one TOML block of docs/token-format.md, parsed."""
    blocks = _TOML_BLOCK.findall(TOKEN_FORMAT.read_text(encoding="utf-8"))
    assert len(blocks) == 1
    config: dict[str, Any] = tomllib.loads(blocks[0])
    return config


def gitleaks_rule() -> dict[str, Any]:
    """The troopauth rule of that block."""
    (rule,) = [r for r in gitleaks_config()["rules"] if r["id"] == "troopauth-token"]
    return rule


@cache
def docs_namespace() -> dict[str, Any]:
    """What the python blocks of docs/token-format.md define, run in order."""
    namespace: dict[str, Any] = {"__name__": "docs:token-format"}
    for line, body in python_blocks(TOKEN_FORMAT):
        code = compile("\n" * (line - 1) + body, str(TOKEN_FORMAT), "exec")
        exec(code, namespace)  # noqa: S102 (running our own documentation)
    return namespace


def shannon_entropy(text: str) -> float:
    """Bits per character, as gitleaks computes a finding's entropy."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def gitleaks_findings(name: str, text: str) -> list[dict[str, Any]]:
    """What gitleaks reports for *text* with the rule: keywords, regex, entropy."""
    rule = gitleaks_rule()
    lowered = text.lower()
    if not any(keyword.lower() in lowered for keyword in rule["keywords"]):
        return []
    findings = []
    for match in re.compile(rule["regex"], re.ASCII).finditer(text):
        secret = match.group(rule.get("secretGroup", 0))
        if shannon_entropy(secret) <= rule["entropy"]:
            continue
        line = text.count("\n", 0, match.start()) + 1
        findings.append(
            {"RuleID": rule["id"], "File": name, "StartLine": line, "Secret": secret}
        )
    return findings


def gitleaks_two_steps(root: Path) -> list[tuple[str, int, str]]:
    """The emulated gitleaks run over *root*, then the page's confirm step."""
    findings = []
    for path in sorted(root.iterdir()):
        findings += gitleaks_findings(path.name, path.read_text(encoding="utf-8"))
    confirmed = docs_namespace()["confirmed"](findings)
    return sorted((f["File"], f["StartLine"], f["Secret"]) for f in confirmed)


class TestGitleaksRule:
    """The gitleaks rule on docs/token-format.md, with the page's confirm step."""

    def test_rule_fits_gitleaks(self):
        """One rule with id, RE2-safe regex, keyword and entropy; defaults kept."""
        config = gitleaks_config()
        assert config["extend"] == {"useDefault": True}
        rule = gitleaks_rule()
        assert rule["keywords"] == [tokens.PREFIX]
        assert 0 < rule["entropy"] < 4
        # RE2 has no look-arounds and no back-references.
        assert not re.search(r"\(\?<?[=!]|\\[1-9]", rule["regex"])

    @given(
        pieces=st.lists(
            st.one_of(
                st.builds(tokens.new_value),
                st.text(alphabet=ALPHABET, min_size=34, max_size=38).map(
                    lambda body: tokens.PREFIX + body
                ),
                st.sampled_from(["_", "-", " ", "\n", "x", "0", "\u00e9", '"', "cpt"]),
            ),
            max_size=12,
        )
    )
    def test_rule_matches_what_the_reference_expression_matches(self, pieces):
        """On any text, the RE2-style rule and the look-around expression agree."""
        text = "".join(pieces)
        rule = re.compile(gitleaks_rule()["regex"], re.ASCII)
        assert [m.group() for m in rule.finditer(text)] == (
            scanners.CANDIDATE.findall(text)
        )

    def test_finds_every_real_value_in_every_shape(self, tmp_path: Path):
        """Candidates confirmed by checksum: each planted value, on its line."""
        expected = plant(tmp_path)
        mapped, listed = tokens.new_value(), tokens.new_value()
        (tmp_path / "mixed.yaml").write_text(
            f"token: {mapped}\nmore:\n  - {listed}\n", "ascii"
        )
        expected += [("mixed.yaml", 1, mapped), ("mixed.yaml", 3, listed)]
        assert gitleaks_two_steps(tmp_path) == sorted(expected)

    def test_near_misses_and_random_strings_are_not_confirmed(self, tmp_path: Path):
        """gitleaks flags one-character typos; the checksum step confirms none."""
        rng = random.Random(12)
        misses = [m for _ in range(25) for m in near_misses(tokens.new_value())]
        randoms = [
            tokens.PREFIX + "".join(rng.choices(ALPHABET, k=36)) for _ in range(10_000)
        ]
        assert not any(tokens.has_valid_checksum(s) for s in misses + randoms)
        (tmp_path / "misses.txt").write_text("\n".join(misses) + "\n", "ascii")
        (tmp_path / "random.env").write_text(
            "".join(f"K{i}={s}\n" for i, s in enumerate(randoms)), "ascii"
        )
        candidates = gitleaks_findings(
            "random.env", (tmp_path / "random.env").read_text()
        )
        assert len(candidates) == len(randoms)  # the rule alone flags them all
        assert gitleaks_two_steps(tmp_path) == []

    def test_entropy_limit_keeps_fresh_values_drops_placeholders(self):
        """Fresh values are well above the rule's entropy; placeholders are not."""
        limit = gitleaks_rule()["entropy"]
        assert min(shannon_entropy(tokens.new_value()) for _ in range(20_000)) > 3.5
        assert limit < 3.5
        for placeholder in ("x" * 36, "X" * 36, "0" * 36, "ab" * 18):
            assert shannon_entropy(tokens.PREFIX + placeholder) <= limit
