"""README.md's command blocks run as written.

Every fenced ``bash``/``sh`` block of README.md is run, in order, by ``bash -euo pipefail``
(every ``python`` block by this interpreter) in a temporary copy of the checkout: its tracked
files and the untracked ones git does not ignore, plus the native kernels built in place, with
``ODESR_DATA`` set, this interpreter's folder first on ``PATH`` and the copy on ``PYTHONPATH``
(so the copy's odesr, baselines and bench are the ones imported). A block fails the test when
any of its commands fails; each block gets ``BLOCK_TIMEOUT_S``.

Markers are HTML comments on the lines right above a block, so a reader sees clean commands:

* ``<!-- no-run: REASON -->``: the block is not run (installs, GPUs, hours-long runs); the
  reason is required.
* ``<!-- readme-test: replace "OLD" with "NEW" -->``: the block runs with OLD replaced by NEW
  (a smaller profile or input); OLD must occur in the block. Several may stack.

The fast checks (markers well-formed, length, no work history, the claims table equal to
``results/cpu/claims.csv``) run in ``make test``; running the blocks is ``slow``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED, _skip_or_fail

README = REPO / "README.md"
MAX_LINES = 250
BLOCK_TIMEOUT_S = 1800  # wall seconds: a hang guard; a loaded 2-core machine is slow

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(no-run|readme-test)\s*:?\s*(.*?)\s*-->\s*$")
REPLACE = re.compile(r'^replace\s+"((?:[^"\\]|\\.)*)"\s+with\s+"((?:[^"\\]|\\.)*)"$')
SHELLS = {"bash", "sh", "shell"}
RUNNABLE = SHELLS | {"python"}
WORK_HISTORY = re.compile(r"(?i)\b(issue|session|recipe)\s*#?\s*\d+\b|\bissue\s+#\d+")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None = None  # the no-run reason
    replacements: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def script(self) -> str:
        text = self.text
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text


def _unescape(s: str) -> str:
    return s.replace('\\"', '"').replace("\\\\", "\\")


def parse_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown`` with the markers on the lines right above each."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        block = Block(line=start + 1, lang=lang, text="\n".join(lines[start + 1 : j]) + "\n")
        k = start - 1
        while k >= 0 and (mk := MARKER.match(lines[k].strip())):
            kind, arg = mk.groups()
            if kind == "no-run":
                block.skip = arg
                if not arg:
                    block.errors.append(f"line {k + 1}: no-run needs a reason")
            else:
                rm = REPLACE.match(arg)
                if not rm:
                    block.errors.append(f"line {k + 1}: cannot parse readme-test marker {arg!r}")
                else:
                    old, new = _unescape(rm.group(1)), _unescape(rm.group(2))
                    block.replacements.insert(0, (old, new))
                    if old not in block.text:
                        block.errors.append(f"line {k + 1}: {old!r} does not occur in the block")
            k -= 1
        blocks.append(block)
        i = j + 1
    return blocks


def runnable_blocks(markdown: str) -> list[Block]:
    """The ``bash``/``sh`` and ``python`` blocks: the ones the test runs unless marked no-run."""
    return [b for b in parse_blocks(markdown) if b.lang in RUNNABLE]


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run one block (shell: ``bash -euo pipefail``; python: this interpreter); returns (exit
    status, the output's tail)."""
    if block.lang == "python":
        argv = [sys.executable, "-c", block.script()]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.script()]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else ""
        return 124, f"timed out after {timeout:.0f} s\n{out[-2000:]}"
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def copy_checkout(dest: Path) -> Path:
    """Copy the checkout's tracked files and the untracked ones git does not ignore to ``dest``,
    plus the native kernels built in place (ignored ``odesr/*.so``)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        _skip_or_fail(f"README blocks run in a copy of the git checkout; git ls-files: {e}")
    names = [n for n in listed.decode().split("\0") if n]
    names += [str(p.relative_to(REPO)) for p in (REPO / "odesr").glob("*.so")]
    for name in names:
        src = REPO / name
        if not src.is_file():  # deleted in the work tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def block_env(copy: Path, data_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(copy)  # the copy's odesr, baselines and bench, not an editable install
    env["ODESR_DATA"] = str(data_root)
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("VIRTUAL_ENV", None)
    return env


# ---- fast checks (make test) -----------------------------------------------------------------


def test_readme_blocks_are_marked_and_short():
    text = README.read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_LINES, f"README.md has {n_lines} lines, at most {MAX_LINES}"
    blocks = runnable_blocks(text)
    assert blocks, "README.md has no bash blocks"
    errors = [f"README.md:{b.line}: {e}" for b in blocks for e in b.errors]
    assert not errors, "\n".join(errors)
    assert any(b.skip is None for b in blocks), "every block is no-run"


def test_no_work_history_in_the_readmes():
    for path in (README, REPO / "bench" / "README.md", REPO / "results" / "cpu" / "README.md"):
        if not path.exists():
            continue
        hits = [
            f"{path.relative_to(REPO)}:{i}: {line.strip()}"
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if WORK_HISTORY.search(line)
        ]
        assert not hits, "references to work history:\n" + "\n".join(hits)


def _claims_table(text: str) -> list[dict[str, str]]:
    """The README's claims table (the one whose header starts ``| claim |``), by column."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| claim |")), None)
    assert start is not None, "README.md has no claims table (a header starting '| claim |')"

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header = cells(lines[start])
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, cells(line), strict=True)))
    return rows


def _num(s: str) -> float | None:
    s = s.replace("\u2212", "-").replace("+", "").strip()
    return None if s in ("", "\u2013", "-") else float(s)


def test_readme_claims_table_is_results_cpu_claims_csv():
    """Every number and verdict of the README's claims table is the one in
    results/cpu/claims.csv, row for row."""
    with open(REPO / "results" / "cpu" / "claims.csv", newline="") as f:
        claims = list(csv.DictReader(f))
    rows = _claims_table(README.read_text())
    assert len(rows) == len(claims), f"README has {len(rows)} claim rows, claims.csv {len(claims)}"
    interval = re.compile(r"^(\S+) \[(\S+), (\S+)\]$")
    for row, want in zip(rows, claims, strict=True):
        where = f"README claims row {row['claim']!r} against claims.csv {want['claim']!r}"
        ours = next(v for k, v in row.items() if k.startswith("ours"))
        m = interval.match(ours)
        assert m, f"{where}: cannot read {ours!r} as 'delta [low, high]'"
        got = [_num(x) for x in m.groups()]
        expect = [float(want[k]) for k in ("ours_delta", "ci_low", "ci_high")]
        assert got == pytest.approx(expect, abs=5e-4), where
        paper = float(want["paper_delta"]) if want["paper_delta"] else None
        assert _num(row["paper"]) == (pytest.approx(paper) if paper is not None else None), where
        assert int(row["seeds"]) == int(want["n_seeds"]), where
        if "images" in row:
            assert int(row["images"]) == int(want["n_images"]), where
        assert row["verdict"] == want["verdict"], where
        assert row["after Holm"] == want["verdict_holm"], where
        if "p" in row:
            if want["p_value"].startswith("<"):  # a bound such as "<1e-6", as claims.csv writes it
                assert row["p"] == want["p_value"], where
            else:
                assert float(row["p"]) == pytest.approx(float(want["p_value"]), rel=1e-3), where
        if "estimator" in row:
            assert row["estimator"] == want["estimator"], where


def test_a_failing_block_fails(tmp_path):
    """The runner reports a failure in the middle of a block and in a pipeline."""
    env = dict(os.environ)
    for script in ("true\nfalse\ntrue\n", "false | true\n", "echo $UNSET_README_VAR\n"):
        code, _ = run_block(Block(line=1, lang="bash", text=script), tmp_path, env, 30)
        assert code != 0, script
    ok = Block(line=1, lang="bash", text="echo PROFILE=cpu\n", replacements=[("cpu", "smoke")])
    code, out = run_block(ok, tmp_path, env, 30)
    assert (code, out.strip()) == (0, "PROFILE=smoke")


def test_markers_parse():
    md = (
        "<!-- no-run: installs -->\n```bash\nmake install\n```\n"
        '<!-- readme-test: replace "a b" with "c" -->\n'
        '<!-- readme-test: replace "x" with "y \\"z\\"" -->\n'
        "```bash\necho a b x\n```\n"
        "<!-- no-run -->\n```sh\nfoo\n```\n"
        '<!-- readme-test: replace "absent" with "c" -->\n```bash\necho\n```\n'
    )
    a, b, c, d = runnable_blocks(md)
    assert (a.skip, a.errors) == ("installs", [])
    assert b.script() == 'echo c y "z"\n' and b.skip is None and not b.errors
    assert c.errors and d.errors


# ---- the blocks themselves (make test-slow) ---------------------------------------------------


@pytest.mark.slow
def test_readme_blocks_run(tmp_path):
    env_root = os.environ.get("ODESR_DATA")
    data_root = Path(env_root) if env_root else SHARED / "datasets"
    if not (data_root / "Set5" / "HR").is_dir():
        _skip_or_fail(f"README blocks need the datasets: {data_root}/Set5/HR missing")
    copy = copy_checkout(tmp_path / "checkout")
    env = block_env(copy, data_root.resolve())
    failures, timings = [], []
    for block in runnable_blocks(README.read_text()):
        if block.skip is not None:
            continue
        t0 = time.monotonic()
        code, out = run_block(block, copy, env, BLOCK_TIMEOUT_S)
        timings.append(f"README.md:{block.line}: {time.monotonic() - t0:.1f} s, exit {code}")
        if code != 0:
            failures.append(f"README.md:{block.line} exit {code}\n{block.script()}---\n{out}")
    print("\n".join(timings))
    assert not failures, "README blocks failed:\n\n" + "\n\n".join(failures)
