"""Leaderboards (Markdown, HTML, CSV, JSON, rich) and plots (PNG) from results.jsonl."""

from .leaderboard import Board, build_board, load_rows, render, render_rich, write_leaderboards
from .plots import make_plots, sample_grid

__all__ = ["Board", "build_board", "load_rows", "render", "render_rich", "write_leaderboards",
           "make_plots", "sample_grid"]
