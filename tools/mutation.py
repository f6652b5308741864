"""A sampled mutation run: does the test suite notice when the rules change?

Each mutant changes one thing in one of troopauth's rule modules (a comparison
flipped, ``and`` for ``or``, a ``not`` dropped, a constant moved by one, a
``raise`` turned into ``pass``), in a copy of ``src/`` so the working tree is
never touched. The chosen tests then run against the copy; a mutant they fail
on is *killed*, one they pass on *survived* (a promise no test checks). The
score is killed / (killed + survived); mutants that break the import or time
out count as killed, and are reported apart.

    python tools/mutation.py --sample 40 --seed 1
    python tools/mutation.py --modules core.py --tests tests/test_rules_tokens.py

Sampling keeps a run to minutes: every site of every module would take hours.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "troopauth"
DEFAULT_MODULES = (
    "core.py",
    "scope.py",
    "grant.py",
    "auth.py",
    "audit.py",
    "tokens.py",
)
#: Rule, value-type and facade tests on MemoryStore: quick, and all a rule needs.
DEFAULT_TESTS = (
    "tests/test_rules_tokens.py",
    "tests/test_rules_manage.py",
    "tests/test_rules_seats.py",
    "tests/test_scope.py",
    "tests/test_grant.py",
    "tests/test_tokens.py",
    "tests/test_audit_chain.py",
    "tests/test_listings.py",
    "tests/test_hardening.py",
    "tests/test_policy.py",
    "tests/test_report_leak.py",
    "tests/test_fuzz.py",
)

_SWAP_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


@dataclass(frozen=True)
class Site:
    """One place a mutant can change: a module, a node's position, what to do."""

    module: str
    line: int
    col: int
    kind: str

    def describe(self) -> str:
        """``core.py:120:8 compare`` and the like."""
        return f"{self.module}:{self.line}:{self.col} {self.kind}"


def _sites(module: str, tree: ast.AST) -> Iterator[Site]:
    """Every mutable site of a module, skipping docstrings and type hints."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAP_COMPARE:
            yield Site(module, node.lineno, node.col_offset, "compare")
        elif isinstance(node, ast.BoolOp):
            yield Site(module, node.lineno, node.col_offset, "boolop")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield Site(module, node.lineno, node.col_offset, "not")
        elif isinstance(node, ast.Raise):
            yield Site(module, node.lineno, node.col_offset, "raise")
        elif (
            isinstance(node, ast.Constant)
            and type(node.value) in (int, bool)
            and node.lineno > 1
        ):
            yield Site(module, node.lineno, node.col_offset, "constant")


class _Mutate(ast.NodeTransformer):
    """Apply one site's change to the node at its position."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.done = False

    def _here(self, node: ast.AST) -> bool:
        here = (
            getattr(node, "lineno", None) == self.site.line
            and getattr(node, "col_offset", None) == self.site.col
        )
        return here and not self.done

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if self.site.kind == "compare" and self._here(node):
            node.ops[0] = _SWAP_COMPARE[type(node.ops[0])]()
            self.done = True
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if self.site.kind == "boolop" and self._here(node):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self.done = True
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if self.site.kind == "not" and self._here(node):
            self.done = True
            return node.operand
        return node

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        if self.site.kind == "raise" and self._here(node):
            self.done = True
            return ast.copy_location(ast.Pass(), node)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if self.site.kind == "constant" and self._here(node):
            self.done = True
            value = node.value
            new = (not value) if isinstance(value, bool) else value + 1
            return ast.copy_location(ast.Constant(new), node)
        return node


def _mutant_source(source: str, site: Site) -> str | None:
    tree = ast.parse(source)
    mutator = _Mutate(site)
    tree = ast.fix_missing_locations(mutator.visit(tree))
    return ast.unparse(tree) if mutator.done else None


def _run_tests(src: Path, tests: list[str], timeout: float) -> str:
    """'survived', 'killed' or 'timeout' for the copy of the package in *src*."""
    env = {**os.environ, "PYTHONPATH": str(src), "HYPOTHESIS_PROFILE": "dev"}
    env.pop("CI", None)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["-k", "not postgres and not sqlite", *tests]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def main(argv: list[str] | None = None) -> int:
    """Sample mutants, run the tests on each, print the table and the score."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=40, help="how many mutants")
    parser.add_argument("--seed", type=int, default=1, help="the sampling seed")
    parser.add_argument("--modules", nargs="+", default=list(DEFAULT_MODULES))
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS))
    parser.add_argument("--timeout", type=float, default=300, help="seconds a run")
    args = parser.parse_args(argv)

    sources = {m: (PACKAGE / m).read_text(encoding="utf-8") for m in args.modules}
    sites = [s for m, text in sources.items() for s in _sites(m, ast.parse(text))]
    chosen = random.Random(args.seed).sample(sites, min(args.sample, len(sites)))
    print(f"{len(sites)} sites in {', '.join(args.modules)}; sampled {len(chosen)}")
    tally = {"killed": 0, "survived": 0, "timeout": 0}
    survivors: list[Site] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="troopauth-mutants-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(PACKAGE, src / "troopauth")
        for i, site in enumerate(sorted(chosen, key=Site.describe), 1):
            mutant = _mutant_source(sources[site.module], site)
            if mutant is None:
                continue
            target = src / "troopauth" / site.module
            target.write_text(mutant, encoding="utf-8")
            outcome = _run_tests(src, args.tests, args.timeout)
            target.write_text(sources[site.module], encoding="utf-8")
            tally[outcome] += 1
            if outcome == "survived":
                survivors.append(site)
            print(f"{i:3d} {site.describe():<32} {outcome}", flush=True)
    caught = tally["killed"] + tally["timeout"]
    total = caught + tally["survived"]
    score = 100.0 * caught / total if total else 0.0
    minutes = (time.perf_counter() - start) / 60
    print(
        f"\nscore {score:.1f}% ({caught} of {total} mutants caught; "
        f"{tally['timeout']} by timeout) in {minutes:.1f} min"
    )
    for site in survivors:
        print(f"survived: {site.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
