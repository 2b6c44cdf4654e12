"""`ppds fit GENERATOR --dataset NAME --epsilon E --out DIR`: one cell by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

ORDER = 33


def register(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit one generator: model, ledger, samples and a sample grid",
        description="Fit one generator and save its model, ledger, samples and sample grid in --out. "
                    "A generator that can resume checkpoints into OUT/checkpoint every 200 private steps; "
                    "SIGTERM or SIGUSR1 makes it checkpoint at the end of the current step and exit "
                    "128 + the signal (143 for SIGTERM): run the same command again to resume.")
    p.add_argument("generator", help="generator plugin name")
    p.add_argument("--dataset", required=True, help="dataset plugin name")
    p.add_argument("--epsilon", required=True, help="target ε (a number, or inf for the non-private recipe)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", metavar="JSON|FILE", help="generator options: inline JSON or a YAML/JSON file")
    p.add_argument("--dataset-config", metavar="JSON|FILE", help="dataset options (split sizes, root, …)")
    p.add_argument("--public", metavar="NAME", help="public dataset, for generators that use one")
    p.add_argument("--samples", type=int, default=2000, help="synthetic images to draw (default 2000)")
    p.add_argument("--trainer", metavar="JSON|FILE", help="options for Lightning's Trainer")
    p.add_argument("--accountant", default="prv", choices=("prv", "rdp"),
                   help="accountant that calibrates σ and fills the ledger (default prv)")
    p.add_argument("--reproducible-noise", action="store_true",
                   help="derive DP noise and Poisson batches from --seed (tests, bit-exact reruns); "
                        "ε then does not hold against anyone who knows the seed")
    p.add_argument("--smoke", action="store_true", help="cut training to a few steps")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for model/, ledger.json, samples")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)


def load_options(text: str | None, flag: str) -> dict[str, Any]:
    """Inline JSON (starts with '{') or the path of a YAML/JSON file → dict."""
    if text is None:
        return {}
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{flag}: invalid JSON at column {err.colno}: {err.msg}") from None
    else:
        from ..matrix._yaml import read_config_text
        from ..matrix.config import parse_yaml

        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{flag} {text}: no such file; pass inline JSON ('{{\"epochs\": 5}}') or a file")
        data = parse_yaml(read_config_text(path), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{flag}: expected a mapping of options")
    return data


def _run(args) -> int:
    progress = None
    bar = None
    if not args.quiet:
        from rich.progress import Progress

        from ._output import err_console

        bar = Progress(console=err_console)
        task = bar.add_task(f"training {args.generator}", total=1)

        def progress(step: int, total: int, info: dict) -> None:
            bar.update(task, completed=step, total=max(total, 1))

        bar.start()
    try:
        from ..matrix.fit import fit_generator

        outcome = fit_generator(
            args.generator, args.dataset, args.epsilon, args.out, delta=args.delta, seed=args.seed,
            config=load_options(args.config, "--config"),
            dataset_config=load_options(args.dataset_config, "--dataset-config"), public=args.public,
            trainer=load_options(args.trainer, "--trainer"), samples=args.samples,
            accountant=args.accountant, smoke=args.smoke, progress=progress,
            reproducible_noise=args.reproducible_noise,
        )
    finally:
        if bar is not None:
            bar.stop()
    if outcome is None:  # a DDP rank other than 0: rank 0 saves and reports
        return 0
    if not args.quiet:
        from ..budget import format_epsilon
        from ._output import console

        led = outcome.ledger
        console.print(
            f"fitted {args.generator} on {args.dataset} in {outcome.seconds:.1f}s: target ε={format_epsilon(led.target_epsilon, 'ascii')}, "
            f"spent ε={format_epsilon(led.epsilon_spent, 'spent')} (δ={led.delta:g}, {led.accountant})\n"
            f"model: {outcome.directory / 'model'}  ledger: {outcome.directory / 'ledger.json'}  "
            f"samples: {outcome.directory / 'samples.npz'} (grid: samples.png)", markup=False, highlight=False,
        )
    return 0
