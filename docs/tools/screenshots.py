"""The README's screenshots of a run folder's leaderboard, taken as a user sees them.

- ``board-html.png``: ``ppds leaderboard DIR --format html`` rendered by headless
  Chromium in a 1400 px wide window;
- ``board-terminal-80.png``, ``board-terminal-120.png``: ``ppds leaderboard DIR`` run
  in a real terminal (a detached tmux window of 80 / 120 columns), its screen
  captured with colours (``tmux capture-pane -e``), drawn by rich as an SVG and
  rasterised by the same Chromium.

Needs ``chromium`` and ``tmux`` on PATH (Debian: ``apt-get install chromium tmux``).

    .venv/bin/python docs/tools/screenshots.py runs/quickstart --out docs/img
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PPDS = Path(sys.executable).with_name("ppds")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("screenshots: no chromium on PATH; install it (Debian: apt-get install chromium)")


def snap(url: str, png: Path, width: int, height: int) -> None:
    subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--window-size={width},{height}",
                    f"--screenshot={png}", url], check=True, capture_output=True, timeout=120)


def terminal_capture(run: Path, columns: int) -> str:
    """What ``ppds leaderboard RUN`` shows in a terminal of ``columns`` columns (ANSI)."""
    if not shutil.which("tmux"):
        sys.exit("screenshots: no tmux on PATH; install it (Debian: apt-get install tmux)")
    session = f"ppds-shot-{columns}"
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    cmd = f"{PPDS} leaderboard {run}; tmux wait-for -S {session}-done; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(columns), "-y", "300",
                    "env", f"COLUMNS={columns}", "TERM=xterm-256color", "sh", "-c", cmd], check=True)
    try:
        subprocess.run(["tmux", "wait-for", f"{session}-done"], check=True, timeout=120)
        time.sleep(0.5)
        shot = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-J", "-S", "-", "-t", session],
                              check=True, capture_output=True, text=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return shot.stdout.rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder (results.jsonl)")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--height", type=int, default=2200, help="HTML window height in px")
    a = ap.parse_args()
    from rich.console import Console
    from rich.text import Text

    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "board.html"
        subprocess.run([str(PPDS), "leaderboard", str(a.run), "--format", "html", "-o", str(html)],
                       check=True)
        snap(html.as_uri(), a.out / "board-html.png", 1400, a.height)
        for columns in (80, 120):
            ansi = terminal_capture(a.run, columns)
            console = Console(record=True, width=columns, file=open("/dev/null", "w"),
                              force_terminal=True, color_system="truecolor")
            console.print(Text.from_ansi(ansi), end="")
            svg = Path(tmp) / f"terminal-{columns}.svg"
            console.save_svg(str(svg), title=f"ppds leaderboard — {columns} columns")
            lines = ansi.count("\n") + 1
            width = int(columns * 8.6) + 60
            snap(svg.as_uri(), a.out / f"board-terminal-{columns}.png", width, lines * 19 + 70)
            print(f"{a.out / f'board-terminal-{columns}.png'}: {lines} lines")
    print(f"{a.out / 'board-html.png'}")


if __name__ == "__main__":
    main()
