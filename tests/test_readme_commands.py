"""Every shell command in README.md works: a README command that no longer works fails here.

The commands are parsed out of the README (fenced and indented code blocks), classified, and checked:

- quick ones run verbatim: the quick-start ``bench.py run`` on a bundled dataset as a subprocess (its outputs go to
  a temporary store through ``$LTBENCH_RESULTS`` / ``$LTBENCH_CACHE``), and read-only report commands (``list``,
  ``--help``, ``table`` / ``compare`` to stdout) in-process through click;
- long ones (full datasets, grids, commands that write files into the repository) are parsed by the real click
  command of ``bench.py`` (every option must be one of that subcommand's parameters, values must convert) and
  their subcommand's ``--help`` must work; a ``run`` of a dataset that is not bundled must name ``--data-root``
  (a fresh clone has no ``./data``);
- ``torchrun`` lines go through torchrun's own argument parser: the script it launches must be a Python file
  (torchrun runs its first argument with the Python interpreter unless ``--no-python``);
- ``pytest`` lines: the paths must exist and the options must be pytest's;
- venv creation and pip installs are skipped, with the reason.

The README is edited by hand; the parser is generic, so new commands are checked without touching this file.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PYTHONS = {".venv/bin/python", "python", "python3", sys.executable}
# whole-argument placeholders of the README's syntax lines (`--data-root DIR`): not real paths, parsed only
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")
WRITES = {"-o", "--output", "--out"}  # a command with these writes into the checkout: parsed, not run
READ_ONLY = {("list",), ("table",), ("compare",)}  # run verbatim when they write nothing
# README commands known to be wrong, by exact text (an entry stops applying as soon as the README line changes)
KNOWN_BROKEN: dict[str, str] = {}  # README lines known not to work (strict xfails); the issue-17 ones are fixed


@dataclass
class Command:
    line: int      # README line where the command starts
    text: str      # as written (continuations joined, comment dropped)
    argv: list[str]


def _blocks(md: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every fenced block and every indented (4-space) code block."""
    lines = md.splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            out.append((i + 2, lines[i + 1:j]))
            i = j + 1
        elif lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            out.append((i + 1, [s[4:] for s in lines[i:j]]))
            i = j
        else:
            i += 1
    return out


def _unwrap_optional(tokens: list[str]) -> list[str]:
    """`[--sample 5000]` -> `--sample 5000` (syntax-line brackets), leaving tokens such as `.[dev]` alone."""
    out, depth = [], 0
    for t in tokens:
        if t.startswith("["):
            depth, t = depth + 1, t[1:]
        if depth and t.endswith("]"):
            depth, t = depth - 1, t[:-1]
        if t:
            out.append(t)
    return out


def extract(md: str) -> list[Command]:
    """Shell commands of the README's code blocks: continuations joined, comments dropped, `&&` chains split,
    optional-argument brackets (`[--sample 5000]`) unwrapped."""
    cmds = []
    for start, body in _blocks(md):
        k = 0
        while k < len(body):
            first, text = k, body[k]
            while text.rstrip().endswith("\\") and k + 1 < len(body):
                k += 1
                text = text.rstrip()[:-1] + " " + body[k].strip()
            k += 1
            try:
                tokens = shlex.split(text, comments=True)
            except ValueError:
                continue  # not shell (e.g. a table or a TOML snippet)
            tokens = _unwrap_optional(tokens)
            part: list[str] = []
            for t in tokens + ["&&"]:
                if t in ("&&", ";", "||"):
                    if part:
                        shown = " ".join(part)
                        cmds.append(Command(start + first, shown, part))
                    part = []
                else:
                    part.append(t)
    return [c for c in cmds if _is_command(c.argv)]


def _is_command(argv: list[str]) -> bool:
    head = argv[0]
    return head in PYTHONS or head.endswith(("/pip", "/python")) or head in ("pip", "torchrun", "bench.py",
                                                                              "ltbench", "bash")


def classify(c: Command) -> str:
    a = c.argv
    if a[0] in PYTHONS and a[1:3] == ["-m", "venv"]:
        return "skip: creates the virtual environment (setup, not a benchmark command)"
    if a[0].endswith("pip") or (a[0] in PYTHONS and a[1:3] == ["-m", "pip"]):
        return "skip: installs packages (setup)"
    if a[0] in ("torchrun", ".venv/bin/torchrun"):
        return "torchrun"
    if a[0] in PYTHONS and a[1:3] == ["-m", "pytest"]:
        return "pytest"
    if (a[0] in PYTHONS and a[1:2] == ["bench.py"]) or a[0] in ("bench.py", "ltbench"):
        return "bench"
    return "unknown"


COMMANDS = extract(README.read_text())


def _bench_args(argv: list[str]) -> list[str]:
    return argv[2:] if argv[0] in PYTHONS else argv[1:]


def _resolve(args: list[str]):
    """(click command, its name path, the arguments left for it), walking nested groups (`data stats`)."""
    import bench
    import click
    cmd, path, rest = bench.cli, [], list(args)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"`bench.py {' '.join(path + rest[:1])}`: no such subcommand"
        cmd, path, rest = sub, path + [rest[0]], rest[1:]
    return cmd, path, rest


def check_bench_static(args: list[str]) -> None:
    """Every option is a parameter of the subcommand, the values convert, and the subcommand's --help works."""
    import click
    from click.testing import CliRunner

    import bench
    cmd, path, rest = _resolve(args)
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
    for t in rest:
        if t.startswith("-") and not re.fullmatch(r"-\d.*", t):
            name = t.split("=", 1)[0]
            assert name in known, (f"`bench.py {' '.join(path)}` has no option {name}; its options: "
                                   f"{', '.join(sorted(known))}")
    if "--help" not in rest and "-h" not in rest:
        try:
            cmd.make_context(" ".join(["bench.py", *path]), list(rest), resilient_parsing=False)
        except click.ClickException as e:
            pytest.fail(f"`bench.py {' '.join(args)}`: {e.format_message()}")
    res = CliRunner().invoke(bench.cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    if path == ["run"]:
        from ltbench.registry import get_dataset
        ds = rest[rest.index("--dataset") + 1] if "--dataset" in rest else None
        if ds and getattr(get_dataset(ds), "needs_data_root", False):
            assert any(t.split("=")[0] == "--data-root" for t in rest), (
                f"`bench.py run --dataset {ds}` without --data-root reads ./data (or $LTBENCH_DATA_ROOT), which a "
                "fresh clone does not have: name the data root in the README command")


def _quick(args: list[str]) -> str | None:
    """'subprocess' / 'in-process' when the command is cheap and safe to run verbatim, else None."""
    if any(t.split("=")[0] in WRITES for t in args):
        return None
    if "--help" in args or "-h" in args:
        return "in-process"
    cmd, path, rest = _resolve(args)
    if tuple(path) in READ_ONLY:
        return "in-process"
    if path == ["run"] and "--dataset" in rest and "all" not in rest:
        from ltbench.registry import get_dataset
        spec = get_dataset(rest[rest.index("--dataset") + 1])
        if not getattr(spec, "needs_data_root", True):  # a bundled subset: the quick start
            return "subprocess"
    return None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict[str, str]:
    """Environment for verbatim runs: results and stage-1 cache in a temporary folder, nothing downloaded."""
    root = tmp_path_factory.mktemp("readme")
    return {"LTBENCH_RESULTS": str(root / "results"), "LTBENCH_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}


_RUNS: dict[str, subprocess.CompletedProcess] = {}


def run_verbatim(cmd: Command, sandbox: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a README command as written (once per session), from the repository root, in the sandbox."""
    if cmd.text not in _RUNS:
        python = REPO / ".venv" / "bin" / "python"
        argv = [str(python) if cmd.argv[0] == ".venv/bin/python" and python.exists() else sys.executable,
                *cmd.argv[1:]]
        _RUNS[cmd.text] = subprocess.run(argv, cwd=REPO, env={**os.environ, **sandbox}, capture_output=True,
                                         text=True, timeout=900)
    return _RUNS[cmd.text]


@pytest.fixture(scope="module")
def quick_start(sandbox) -> None:
    """A newcomer's store: the README's first quick run (the quick start) done, as the README order implies,
    before the report commands that read the default store."""
    for c in COMMANDS:
        if classify(c) == "bench" and _quick(_bench_args(c.argv)) == "subprocess":
            run_verbatim(c, sandbox)
            return


def _params():
    for c in COMMANDS:
        marks = [pytest.mark.xfail(reason=KNOWN_BROKEN[c.text], strict=True)] if c.text in KNOWN_BROKEN else []
        yield pytest.param(c, id=f"L{c.line}:{c.text[:70]}", marks=marks)


def test_readme_has_commands():
    kinds = [classify(c) for c in COMMANDS]
    assert kinds.count("bench") >= 5 and "unknown" not in kinds, list(zip([c.text for c in COMMANDS], kinds))


@pytest.mark.parametrize("cmd", list(_params()))
def test_readme_command(cmd: Command, sandbox, monkeypatch, request):
    kind = classify(cmd)
    if kind.startswith("skip"):
        pytest.skip(kind)
    assert kind != "unknown", f"README line {cmd.line}: `{cmd.text}` is no command this test knows how to check"
    monkeypatch.chdir(REPO)
    if kind == "torchrun":
        from torch.distributed.run import get_args_parser
        ns = get_args_parser().parse_args(cmd.argv[1:])
        script, rest = ns.training_script, list(ns.training_script_args)
        if not ns.no_python:
            assert script.endswith(".py") and (REPO / script).is_file(), (
                f"README line {cmd.line}: torchrun runs {script!r} as a Python script; give bench.py itself "
                "(torchrun uses its own interpreter) or add --no-python")
            check_bench_static(rest)
        else:
            check_bench_static(rest[1:] if rest[:1] == ["bench.py"] else rest)
        return
    if kind == "pytest":
        args = cmd.argv[3:]
        out = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=REPO, capture_output=True,
                             text=True).stdout
        for t in args:
            if t.startswith("-"):
                name = t.split("=", 1)[0]
                assert re.search(rf"(^|[\s,]){re.escape(name)}([\s=,]|$)", out, re.M), f"pytest has no option {name}"
            else:
                assert (REPO / t.split("::")[0]).exists(), f"README line {cmd.line}: {t} does not exist"
        return
    args = _bench_args(cmd.argv)
    how = _quick(args) if not any(PLACEHOLDER.match(t) for t in args) else None
    if how == "subprocess":
        res = run_verbatim(cmd, sandbox)
        assert res.returncode == 0, f"`{cmd.text}` failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        assert "acc" in res.stdout and "NLL" in res.stdout, "the run printed no results table"
        assert Path(sandbox["LTBENCH_RESULTS"]).is_dir(), "the run wrote outside $LTBENCH_RESULTS"
    elif how == "in-process":
        from click.testing import CliRunner

        import bench
        reads_store = any("--results" in p.opts for p in _resolve(args)[0].params)
        if reads_store and "--results" not in args:  # reads the default store: the quick start's
            request.getfixturevalue("quick_start")
        res = CliRunner().invoke(bench.cli, args, env=sandbox)
        assert res.exit_code == 0, f"`{cmd.text}` exited {res.exit_code}:\n{res.output[-3000:]}"
    else:
        check_bench_static(args)


def test_parser_on_a_sample():
    md = ("text\n\n```bash\n# comment\n.venv/bin/python bench.py run --method ce \\\n    --dataset x  # why\n"
          "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'\n```\n\n"
          "    .venv/bin/python bench.py data check --dataset inat2018 [--sample 5000]\n"
          "                # trailing comment line\n\nprose\n")
    got = [(c.line, c.argv) for c in extract(md)]
    assert got == [(5, [".venv/bin/python", "bench.py", "run", "--method", "ce", "--dataset", "x"]),
                   (7, ["python3", "-m", "venv", ".venv"]),
                   (7, [".venv/bin/pip", "install", "-e", ".[dev]"]),
                   (10, [".venv/bin/python", "bench.py", "data", "check", "--dataset", "inat2018", "--sample",
                         "5000"])]
    assert [classify(c) for c in extract(md)][1:3] == ["skip: creates the virtual environment (setup, not a "
                                                       "benchmark command)", "skip: installs packages (setup)"]


def test_static_check_catches_a_wrong_option():
    check_bench_static(["table", "--format", "csv", "--dataset", "cifar10-lt-if100"])
    with pytest.raises(AssertionError, match="has no option --formats"):
        check_bench_static(["table", "--formats", "csv"])
    with pytest.raises(pytest.fail.Exception, match="stage1"):
        check_bench_static(["run", "--method", "ce", "--dataset", "cifar100-lt-tiny", "--stage1", "adam"])
    with pytest.raises(AssertionError, match="no such subcommand"):
        check_bench_static(["tabel"])
