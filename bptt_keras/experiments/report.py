"""Where an experiment writes its results: tables (CSV + Markdown), figures, configuration.

A run directory of `bptt-keras reproduce NAME` holds

    config.json          the exact configuration (quick or full, seed, every size used), the
                         commit that ran ("code") and the wall time ("wall_seconds")
    <table>.csv/.md      each results table, published figures beside measured ones
    curves.csv           raw data behind the learning-curve plots, where there are any
    <figure>.png         each plot
    tables.json          the tables with their types (for summaries over seeds)
    README.md            the tables and figures of the run on one page

Every number in a table is computed in the same run; published numbers are quoted with their
source in a `published` column or in the table's notes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from bptt_keras.progress import Progress


def _cell(value: Any) -> str:
    """A table cell: floats with 4 significant digits, everything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Renders `rows` (dicts with the same keys) as a GitHub Markdown table."""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """`3725.2` -> `"1 h 2 min 5 s"`; under a minute, `"12.3 s"`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours} h " if hours else "") + f"{minutes} min {secs} s"


def load_tables(out: str | Path) -> dict[str, list[dict]]:
    """The tables of a finished run directory (`tables.json`), as `Report.tables` held them.

    Raises:
        FileNotFoundError: `out` holds no finished run (no `tables.json`).
    """
    path = Path(out) / "tables.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} holds no finished run: {path.name} is missing.")
    return json.loads(path.read_text())


def code_version() -> str:
    """The code a run was made with: the git commit of the package's checkout (with
    "+changes" when tracked files differ from it), else the installed version, so that a
    number in the docs can be traced to the code that computed it."""
    import subprocess

    from bptt_keras import __version__

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return f"bptt_keras {__version__}"
    return f"{commit}+changes" if changed else commit


class Report:
    """Collects one experiment run's tables and figures in its run directory.

    Args:
        name: the experiment's name.
        out: the run directory (created if missing).
        quick: whether this is the minutes-sized version.
        seed: the run's seed.
        config: the sizes and settings used (written to `config.json`).
        verbose: 1 prints a line per finished unit of work (`progress`), 0 nothing.

    Example:

    >>> report = Report("adding", Path("runs/adding"), quick=True, seed=0, config={"T": [10]})
    >>> report.table("results", [{"model": "lstm", "mse": 0.01}], title="Adding problem")
    >>> report.finish("One line of summary.")
    """

    def __init__(
        self,
        name: str,
        out: str | Path,
        *,
        quick: bool,
        seed: int,
        config: dict,
        verbose: int = 1,
        scale: str | None = None,
    ):
        self.name, self.quick, self.seed, self.verbose = name, bool(quick), int(seed), verbose
        self.scale = scale or ("quick" if self.quick else "full")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.config = {"experiment": name, "quick": self.quick, "seed": self.seed, **config}
        self.config["code"] = code_version()
        if self.scale not in ("quick", "full"):  # recorded only where it says more than quick
            self.config = {"scale": self.scale, **self.config}
        self.tables: dict[str, list[dict]] = {}
        self.files: dict[str, Path] = {}
        self._sections: list[str] = []
        # When the run began (`time.monotonic()`): `finish` reports the wall time from here, so
        # a user knows what rerunning it costs. A summary over seeds sets it to its first run's.
        self.started = time.monotonic()

    def progress(self, total: int) -> Progress:
        """A `Progress` for `total` units of this experiment (silent when `verbose=0`)."""
        return Progress(self.name, total, enabled=bool(self.verbose))

    def table(
        self, name: str, rows: list[dict], *, title: str, notes: str = ""
    ) -> tuple[Path, Path]:
        """Writes `rows` to `<name>.csv` and `<name>.md` and keeps them for the summary."""
        if not rows:
            raise ValueError(f"Table {name!r} has no rows.")
        csv_path = self.data(name, rows)
        text = f"### {title}\n\n{markdown_table(rows)}\n"
        if notes:
            text += f"\n{notes}\n"
        md_path = self.out / f"{name}.md"
        md_path.write_text(text)
        self.tables[name] = rows
        self.files[md_path.name] = md_path
        self._sections.append(text)
        return csv_path, md_path

    def data(self, name: str, rows: list[dict]) -> Path:
        """Writes raw data behind a plot (e.g. learning curves) to `<name>.csv` only."""
        path = self.out / f"{name}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        self.files[path.name] = path
        return path

    def figure(self, name: str, figure, *, caption: str) -> Path:
        """Saves a Matplotlib `Figure` to `<name>.png` (readable at README size)."""
        path = self.out / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        self.files[path.name] = path
        self._sections.append(f"![{caption}]({path.name})\n\n*{caption}*\n")
        return path

    def finish(self, summary: str) -> Path:
        """Writes `config.json` and `README.md` (summary, then every table and figure)."""
        seconds = time.monotonic() - self.started
        self.config["wall_seconds"] = round(seconds, 1)
        config_path = self.out / "config.json"
        config_path.write_text(json.dumps(self.config, indent=2, default=str) + "\n")
        # The tables with their types (yes/no, integers, floats, NaN), for summaries made from
        # run directories written by other processes (`reproduce --seeds ... --jobs N`).
        tables_path = self.out / "tables.json"
        tables_path.write_text(json.dumps(self.tables, indent=1, default=str) + "\n")
        self.files["tables.json"] = tables_path
        mode = self.scale
        seeds = self.config.get("seeds")
        who = f"seeds {', '.join(map(str, seeds))}" if seeds else f"seed {self.seed}"
        head = (
            f"# Experiment `{self.name}` ({mode} mode, {who})\n\n{summary}\n\n"
            f"Wall time: {format_seconds(seconds)} on {os.cpu_count()} CPU cores "
            f"(code {self.config['code']}).\n"
        )
        readme = self.out / "README.md"
        tmp = readme.with_suffix(".tmp")
        tmp.write_text("\n".join([head, *self._sections]))
        os.replace(tmp, readme)  # the summary appears whole or not at all
        self.files["config.json"], self.files["README.md"] = config_path, readme
        return readme
