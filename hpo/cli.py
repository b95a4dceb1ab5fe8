"""`hpo` command line. Each handler parses its arguments and makes one call."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from hpo.errors import SpecError

EXIT_BAD_INPUT = 2


def _quiet_environment() -> None:
    # Library chatter would bury the trial table; errors still surface through hpo.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # hpo draws its own trial table
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def cmd_validate(args: argparse.Namespace) -> int:
    from hpo.config import dump_spec, load_spec

    spec = load_spec(args.spec, args.set)
    if args.data:
        from hpo.data import prepare

        data = prepare(spec)
        stats = ", ".join(f"{k}={v}" for k, v in data.stats.items())
        print(f"# data: {stats}; fingerprint {data.fingerprint}", file=sys.stderr)
    print(dump_spec(spec), end="")
    print(f"# {args.spec}: valid", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.config import load_spec
    from hpo.tuner import run_search

    overrides = list(args.set)
    if args.storage:
        overrides.append(f"storage={args.storage}")
    spec = load_spec(args.spec, overrides)
    outcome = run_search(
        spec, spec_path=args.spec, name=args.name, address=args.address, show_table=not args.quiet
    )
    _print_outcome(outcome)
    return 0


def _print_outcome(outcome: object) -> None:
    best = getattr(outcome, "best", None)
    counts = getattr(outcome, "counts", {})
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"trials: {summary}", file=sys.stderr)
    if best is not None:
        print(
            f"best: {best.metric} = {best.value:.6g} (trial {best.trial_id}, evaluation "
            f"{best.evaluation})",
            file=sys.stderr,
        )
    else:
        print("best: no trial finished an evaluation", file=sys.stderr)
    print(getattr(outcome, "run_dir", ""))


def cmd_export(args: argparse.Namespace) -> int:
    from hpo.export import export_run

    print(export_run(args.run_dir, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter and fine-tuning-strategy search for Hugging Face models "
        "on Ray Tune.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def spec_command(name: str, help_text: str, handler: Callable) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("spec", help="the search spec (YAML)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a spec value (YAML syntax), e.g. run_cap=20",
        )
        p.set_defaults(handler=handler)
        return p

    run = spec_command("run", "run a search and export its best model", cmd_run)
    run.add_argument("--name", help="the run directory's name (default: spec name + time)")
    run.add_argument("--storage", help="folder or URI that holds run directories")
    run.add_argument("--address", help="a Ray cluster to run on (default: a local Ray)")
    run.add_argument("--quiet", action="store_true", help="no live trial table")

    validate = spec_command(
        "validate", "check a spec without starting Ray; print it resolved", cmd_validate
    )
    validate.add_argument(
        "--data", action="store_true", help="also load, clean and tokenize the data"
    )

    export = sub.add_parser("export", help="(re)export the best checkpoint of a search")
    export.add_argument("run_dir", help="a run directory")
    export.add_argument("--out", required=True, help="the model folder to write")
    export.set_defaults(handler=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_environment()
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SpecError as err:
        print(f"hpo: {err.render()}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
