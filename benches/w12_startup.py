"""W12: the command line's fixed cost. Each command's start (the interpreter, the imports its module needs, argument
parsing) against a bare interpreter (``python -c pass``): the target is within 30 ms of it. Then the no-change
``content copy`` of 3,000 files from the command line against ``rsync -a``: the target is faster than rsync."""

from __future__ import annotations

import compileall
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from tests.support.cli import UPMIRROR

import upmirror
from benches.harness import Report, alternate, require, run_quietly, runner
from benches.w6_copy import make_source
from upmirror.cli import COMMANDS as CLI_COMMANDS

# Commands whose start is measured: `--version`, every command's `--help` (its fixed cost: the interpreter, the
# imports its module needs to build its parser), and `status`, which also reads the options and the store.
COMMANDS = {
    "upmirror --version": ["--version"],
    **{f"upmirror {name} --help": [name, "--help"] for name in CLI_COMMANDS},
    "upmirror status (a server directory)": ["status", "--dir", "{server}"],
}
COPY_SHAPE = [(3000, 4 << 10)]
# The installed `upmirror` script, as users run it (`python -m upmirror.cli` would add runpy's own start).
UPMIRROR_SCRIPT = [str(Path(sys.executable).with_name("upmirror"))]


def run(quick: bool) -> Report:
    require("rsync")
    runs = 7 if quick else 15
    # An installed package has its bytecode compiled (pip does it); a working tree run with PYTHONDONTWRITEBYTECODE
    # (as on these machines) would compile every module of the command on every start and time the compiler.
    compileall.compile_dir(Path(upmirror.__file__).parent, quiet=1)
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-w12-", dir="/var/tmp"))
    try:
        server = scratch / "server"
        run_quietly([*UPMIRROR, "init", "--dir", str(server)])
        report = Report("W12", "command-line start-up, and a no-change content copy of 3,000 files", 0, 0)
        contenders = {"python -c pass (the bare interpreter)": runner([sys.executable, "-c", "pass"])}
        for name, words in COMMANDS.items():
            contenders[name] = runner([*UPMIRROR_SCRIPT, *(w.format(server=server) for w in words)])
        times = alternate(contenders, runs)
        bare = statistics.median(times["python -c pass (the bare interpreter)"])
        for name, seconds in times.items():
            extra = statistics.median(seconds) - bare
            note = "" if name.startswith("python") else f"+{extra * 1000:.0f} ms over the bare interpreter"
            report.add(name, seconds, is_upmirror=name.startswith("upmirror --version"), note=note)

        source, destination = scratch / "src", scratch / "dst"
        make_source(source, COPY_SHAPE)
        run_quietly([*UPMIRROR, "content", "verify", str(source)])
        run_quietly([*UPMIRROR, "content", "copy", str(source), str(destination)])
        copies = {
            "no change: upmirror content copy": runner(
                [*UPMIRROR_SCRIPT, "content", "copy", str(source), str(destination)]
            ),
            "no change: rsync -a": runner(["rsync", "-a", f"{source}/", f"{destination}/"]),
        }
        for name, seconds in alternate(copies, runs).items():
            report.add(name, seconds, is_upmirror=name.startswith("no change: upmirror"))
        report.notes.append(
            "Ratios are against the first upmirror row (`--version`); the notes give each command's start over the "
            "bare interpreter (target: within 30 ms). The no-change copy rows compare with each other (target: "
            "upmirror faster than rsync -a)."
        )
        report.notes.append("The package's bytecode was compiled first, as an installed package has it.")
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
