"""Progress bars that suit both a terminal and a log file.

On a terminal `progress_bar` is an ordinary tqdm bar. When the output is not a terminal (a log
file, CI, a pipe), redrawing a bar writes hundreds of carriage-return frames into the log, so the
bar instead prints one plain line every LOG_INTERVAL_S seconds (the first after that long, so
short work prints nothing) and a last line when it closes (bars made with leave=False print no
last line).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 10.0


class progress_bar(tqdm):  # noqa: N801 - used like the tqdm function it replaces
    """tqdm on a terminal; a line every LOG_INTERVAL_S seconds otherwise."""

    def __init__(self, *args, **kwargs) -> None:
        stream = kwargs.get("file") or sys.stderr
        self._log_mode = not (hasattr(stream, "isatty") and stream.isatty())
        if self._log_mode:
            kwargs["mininterval"] = kwargs["maxinterval"] = kwargs["delay"] = LOG_INTERVAL_S
            kwargs.pop("dynamic_ncols", None)
            kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self._log_mode:
            return super().display(msg, pos)
        if msg == "":  # tqdm clearing a finished leave=False bar: nothing to clear in a log
            return False
        self.fp.write((self.__str__() if msg is None else msg).strip() + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if self._log_mode and not self.disable:
            if self.leave:
                self.display()
            self.leave = False  # the last line is written; tqdm's own close only clears
        super().close()
