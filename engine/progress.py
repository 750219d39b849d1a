"""Saying what a first run is doing while it builds the table cache (10-15 s of silence otherwise).

`CacheProgress` is the `progress(table, rows)` callback that `PolicyKB.open` and `check_kb` pass
down to the store. It speaks only when a table is actually built (a warm cache stays silent),
always on standard error so JSON on standard output stays clean: a live bar per table on a
terminal, one plain line otherwise (logs and CI keep one line, not a redrawn bar).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.status import Status

NOTICE = "policykb: first run: loading the NCCI and CMS tables into the cache at {cache} (once, about 15 s)"


class CacheProgress:
    """A context manager and the store's progress callback: `with CacheProgress(err, cache) as p:`."""

    def __init__(self, console: Console, cache_dir: Path, status: Status | None = None) -> None:
        self.console = console
        self.cache_dir = cache_dir
        self.status = status  # a spinner already on screen: update its text instead of a bar
        self.started = False
        self._bar: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> CacheProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._finish()
            self._bar.stop()

    def __call__(self, table: str, rows: int) -> None:
        if not self.started:
            self.started = True
            self._start()
        if self.status is not None and self.console.is_terminal:
            self.status.update(f"building the table cache: {table}, {rows:,} rows…")
        elif self._bar is not None:
            task = self._tasks.get(table)
            if task is None:
                self._finish()  # tables are built one after another
                task = self._tasks[table] = self._bar.add_task(table, total=None, rows=0)
            self._bar.update(task, rows=rows)

    def _finish(self) -> None:
        """Mark the tables so far as done (a full bar); the row count shown is the final one."""
        if self._bar is not None:
            for task in self._bar.tasks:
                self._bar.update(task.id, total=1, completed=1)

    def _start(self) -> None:
        if not self.console.is_terminal:
            self.console.print(NOTICE.format(cache=self.cache_dir), markup=False, highlight=False, soft_wrap=True)
            return
        if self.status is not None:
            return
        self.console.print(f"[dim]First run: building the table cache in {self.cache_dir} (once).[/]", highlight=False)
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<12}"),
            BarColumn(),
            TextColumn("{task.fields[rows]:>12,} rows"),
            TimeElapsedColumn(),
            console=self.console,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._bar.start()
