"""`hpo` command line. Each handler parses its arguments and makes one call."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hpo.errors import SpecError, of_spec

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C
EXIT_NO_MODEL = 3  # the search ran, and no trial produced a model (every one errored)
EXIT_BROKEN_PIPE = 141  # as a shell reports a process ended by SIGPIPE


def _quiet_environment() -> None:
    # Library chatter would bury the trial table; errors still surface through hpo.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers 5 draws a "Loading weights" bar at every from_pretrained (the export and its
    # test evaluation): the trial table is hpo's progress display.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Bars drawn with tqdm itself (transformers' GGUF conversion at every load of a .gguf model).
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # A traceback per failure, each restart's too, would bury the table: hpo.failure_lines
    # says each failure in a line, and errors/<trial>.txt keeps the whole traceback.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # hpo draws its own trial table
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # A W&B service another process started (a notebook, a script that ran hpo) is not
    # hpo's: a driver killed while connected to it leaves its trials' runs open there, and
    # `hpo resume` could not open them again ("run ID ... is in use"). hpo starts its own.
    os.environ.pop("WANDB_SERVICE", None)


def cmd_validate(args: argparse.Namespace) -> int:
    from hpo.config import dump_spec, load_spec
    from hpo.schedulers import evaluations_per_trial, scheduler_caveats

    # The local data files too, as `hpo run` would read them: "valid" means it runs.
    spec = load_spec(args.spec, args.set, read_data=True, check_data=True)
    evaluations = None
    if args.data:
        from hpo.data import prepare

        with of_spec(args.spec):
            data = prepare(spec)
        stats = ", ".join(f"{k}={v}" for k, v in data.stats.items())
        print(f"# data: {stats}; fingerprint {data.fingerprint}", file=sys.stderr)
        evaluations = evaluations_per_trial(spec, len(data.train))
    for caveat in scheduler_caveats(spec, evaluations=evaluations):
        print(f"# note: {caveat}", file=sys.stderr)
    print(dump_spec(spec), end="")
    print(f"# {args.spec}: valid", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.config import load_spec, naming_overrides
    from hpo.tuner import run_search

    address = _driver_address(args)
    overrides = list(args.set)
    if args.storage is not None:  # '' too: refused, not the spec's storage in its stead
        overrides.append(f"storage={args.storage}")
    flags = ("storage",) if args.storage is not None else ()
    spec = load_spec(args.spec, overrides, read_data=True, flags=flags)
    with _results_only_on_stdout(), naming_overrides(overrides, flags):
        outcome = run_search(
            spec, spec_path=args.spec, name=args.name, address=address, show_table=not args.quiet
        )
    return _print_outcome(outcome)


def cmd_resume(args: argparse.Namespace) -> int:
    if args.submit:
        return _submit_for_run(args, [])
    _no_job_options(args)
    from hpo.tuner import resume_search

    with _results_only_on_stdout():
        outcome = resume_search(
            args.run_dir, address=_driver_address(args), show_table=not args.quiet
        )
    return _print_outcome(outcome)


@contextlib.contextmanager
def _results_only_on_stdout() -> Iterator[None]:
    """While a search or a retraining runs, what libraries print goes to stderr: stdout
    carries only the command's result (`RUN_DIR=$(hpo run ...)`), and transformers prints
    "[INFO] Running in WANDB offline mode" there when W&B is offline."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _submit_for_run(args: argparse.Namespace, extra: list[str]) -> int:
    """`hpo resume|confirm RUN_DIR --submit`: the same command, as a Ray Job on the cluster."""
    from hpo.jobs import submit_for_run

    job = submit_for_run(
        args.command, args.run_dir, args.address, extra, pip=args.pip, env=args.env
    )
    print(f"submitted {args.command} of {job.name}: run directory {job.run_dir}", file=sys.stderr)
    print(job.job_id)
    return 0


def _no_job_options(args: argparse.Namespace) -> None:
    """--pip and --env shape a Ray Job: without --submit they would be silently dropped."""
    given = [f"--{name}" for name in ("pip", "env") if getattr(args, name)]
    if given:
        raise SpecError([f"{' and '.join(given)}: only with --submit (they are the job's)"])


def _driver_address(args: argparse.Namespace) -> str | None:
    """The Ray address this machine drives the search from; a dashboard's (what Ray Jobs
    use) would reach ray.init and fail there with Ray's own words."""
    address = args.address
    if address and address.startswith(("http://", "https://")):
        raise SpecError(
            [
                f"--address {address}: a dashboard address is for Ray Jobs: use `hpo submit` "
                "(or --submit), or give the cluster's Ray address (HEAD:6379 or auto)"
            ]
        )
    if address:
        from hpo.cluster import check_ray_address

        check_ray_address(address)
    return address


def _print_outcome(outcome: Any) -> int:
    """The closing summary; exit code 130 when the search was interrupted, 3 when it ended
    without a model."""
    best = outcome.best
    summary = ", ".join(f"{n} {k}" for k, n in sorted(outcome.counts.items()))
    print(f"trials: {summary}", file=sys.stderr)
    if outcome.interrupted:
        print(
            "interrupted: the search state is saved. Resume with:\n"
            f"  hpo resume {shlex.quote(outcome.run_dir)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if outcome.target_reached:
        print("metric.target reached: the search ended there", file=sys.stderr)
    if best is not None:
        print(
            f"best: {best.metric} = {best.value:.6g} (trial {best.trial_id}, evaluation "
            f"{best.evaluation}){_later(outcome.best_outcome)}",
            file=sys.stderr,
        )
    print(outcome.run_dir)
    if best is None:  # no model to show for it: a script must see that, not exit code 0
        print(_no_model(outcome), file=sys.stderr)
        return EXIT_NO_MODEL
    return 0


def _later(best_outcome: str) -> str:
    """What the exported model's trial did after its best evaluation, where a user would not
    guess it: the model is that evaluation's, from a trial whose loss later blew up."""
    if best_outcome in ("diverged", "errored"):
        return f"; the trial {best_outcome} after it: the model is from this evaluation"
    return ""


def _no_model(outcome: Any) -> str:
    if set(outcome.counts) == {"errored"}:
        return (
            f"every trial failed; the first to start: {outcome.first_error or 'see trials.csv'}\n"
            f"  tracebacks: {outcome.run_dir}/errors/"
        )
    return "no model: no trial finished an evaluation with a finite score"


def cmd_export(args: argparse.Namespace) -> int:
    from hpo.export import export_run

    print(export_run(args.run_dir, args.out))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from hpo.jobs import submit

    job = submit(
        args.spec,
        args.address,
        args.set,
        name=args.name,
        storage=args.storage,
        pip=args.pip,
        env=args.env,
    )
    print(f"submitted {job.name}: run directory {job.run_dir}", file=sys.stderr)
    print(job.job_id)
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from hpo.jobs import list_jobs

    rows = list_jobs(args.address)
    if not rows:
        print("no jobs on this cluster", file=sys.stderr)
        return 0
    width = {key: max(len(key), *(len(r[key]) for r in rows)) for key in rows[0]}
    print("  ".join(key.upper().ljust(width[key]) for key in rows[0]).rstrip())
    for row in rows:
        print("  ".join(value.ljust(width[key]) for key, value in row.items()).rstrip())
    return 0


def cmd_jobs_status(args: argparse.Namespace) -> int:
    from hpo.jobs import job_status

    for key, value in job_status(args.address, args.job_id).items():
        print(f"{key}: {value}")
    return 0


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    from hpo.jobs import print_logs

    status = print_logs(args.address, args.job_id, args.follow)
    return 0 if not args.follow or status == "SUCCEEDED" else 1


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    from hpo.jobs import TERMINAL, stop

    status = stop(args.address, args.job_id)
    print(status)
    return 0 if status in TERMINAL else 1


def cmd_jobs_fetch(args: argparse.Namespace) -> int:
    from hpo.jobs import fetch

    print(fetch(args.address, args.job_id, args.out))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hpo.paths import is_remote_uri
    from hpo.report import report_run
    from hpo.storage import RunLocation, readable_run

    out = args.out
    if out is None and is_remote_uri(args.run_dir):  # no run directory here to write into
        out = f"{RunLocation.at(args.run_dir).name}-report"
    with readable_run(args.run_dir) as run_dir:
        print(report_run(run_dir, out, identity=args.run_dir).html)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hpo.compare import compare_runs
    from hpo.storage import readable_run

    with contextlib.ExitStack() as stack:
        run_dirs = [stack.enter_context(readable_run(d)) for d in args.run_dirs]
        print(compare_runs(run_dirs, args.out))
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from hpo.confirm import check_counts, confirm_run

    if args.submit:
        check_counts(args.top_k, args.seeds)
        counts = ["--top-k", str(args.top_k), "--seeds", str(args.seeds), "--quiet"]
        return _submit_for_run(args, counts)
    _no_job_options(args)
    address = _driver_address(args)
    with _results_only_on_stdout():
        record = confirm_run(
            args.run_dir, args.top_k, args.seeds, address=address, show_table=not args.quiet
        )
    print(record)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from hpo.schema import field_help
    from hpo.spec import JobSpec, ParamSpec
    from hpo.tasks import RECIPE_PARAMS

    rows = field_help(JobSpec) + field_help(ParamSpec, "parameters.<name>.")
    rows += [  # what <name> may be
        ("parameters.<TrainingArguments field>", "e.g. learning_rate, weight_decay, warmup_steps"),
        ("parameters.model.<config field>", "a field of the model's config (hidden_dropout_prob)"),
        (
            "parameters.<name>@<variant>",
            "<name>'s own range under its own `when` (learning_rate@lora)",
        ),
    ]
    rows += [(f"parameters.{name}", text) for name, text in RECIPE_PARAMS.items()]
    width = max(len(k) for k, _ in rows)
    for key, text in rows:
        print(f"{key:<{width}}  {text}")
    return 0


def job_options(p: argparse.ArgumentParser) -> None:
    """What a Ray Job that hpo submits may add: pip packages and environment variables."""
    p.add_argument(
        "--pip", action="append", default=[], metavar="REQ", help="pip requirement for the job"
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this environment variable to the job (W&B, HF, AWS keys pass already)",
    )


def submit_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--submit",
        action="store_true",
        help="run it on the cluster as a Ray Job (as `hpo submit`; RUN_DIR where the cluster "
        "reaches it: a bucket URI or a shared folder); prints the job's id",
    )
    job_options(p)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hpo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter and fine-tuning-strategy search for Hugging Face models "
        "on Ray Tune.",
    )
    parser.add_argument("--version", action="version", version=f"hpo {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, handler: Callable | None) -> argparse.ArgumentParser:
        """A subcommand whose `--help` opens with the line `hpo --help` lists it by."""
        p = sub.add_parser(name, help=help_text, description=help_text)
        if handler is not None:
            p.set_defaults(handler=handler, parser=p)
        return p

    def spec_command(name: str, help_text: str, handler: Callable) -> argparse.ArgumentParser:
        p = command(name, help_text, handler)
        p.add_argument("spec", help="the search spec (YAML)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a spec value (YAML syntax), e.g. run_cap=20",
        )
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

    command("keys", "list every spec key with its meaning", cmd_keys)

    address_help = "Ray dashboard address, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)"
    run_address_help = (
        "a Ray cluster to run on (default: a local Ray); with --submit, its dashboard address, "
        "e.g. http://HEAD:8265 (default: $RAY_ADDRESS)"
    )
    submit = spec_command("submit", "run a search on a Ray cluster as a Ray Job", cmd_submit)
    submit.add_argument("--address", help=address_help)
    submit.add_argument("--name", help="the run directory's name (default: spec name + time)")
    submit.add_argument("--storage", help="folder or URI every node reaches, for run directories")
    job_options(submit)
    jobs = command("jobs", "searches submitted to a Ray cluster", None)
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    for verb, text, handler in (
        ("list", "every job on the cluster", cmd_jobs_list),
        ("status", "a job's status and run directory", cmd_jobs_status),
        ("logs", "a job's output", cmd_jobs_logs),
        ("stop", "stop a job and its trials", cmd_jobs_stop),
        ("fetch", "copy a job's run directory here", cmd_jobs_fetch),
    ):
        p = jobs_sub.add_parser(verb, help=text, description=text)
        if verb != "list":
            p.add_argument("job_id", help="the id `hpo submit` printed")
        p.add_argument("--address", help=address_help)
        p.set_defaults(handler=handler, parser=p)
        if verb == "logs":
            p.add_argument("--follow", action="store_true", help="follow until the job ends")
        if verb == "fetch":
            p.add_argument("--out", required=True, help="the folder to create")

    resume = command(
        "resume", "finish an interrupted or crashed search from its saved state", cmd_resume
    )
    resume.add_argument("run_dir", help="the run directory of the search")
    resume.add_argument("--address", help=run_address_help)
    resume.add_argument("--quiet", action="store_true", help="no live trial table")
    submit_option(resume)

    export = command("export", "(re)export the best checkpoint of a search", cmd_export)
    export.add_argument("run_dir", help="a run directory, or a bucket run's URI")
    export.add_argument("--out", required=True, help="the model folder to write")

    report = command("report", "plots, report.html and a summary of a search", cmd_report)
    report.add_argument("run_dir", help="a run directory, or a bucket run's URI")
    report.add_argument("--out", help="folder for report.html and its PNGs (RUN_DIR/report)")

    compare = command("compare", "searches side by side, best-so-far on one plot", cmd_compare)
    compare.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directories or bucket runs' URIs"
    )
    compare.add_argument("--out", default="hpo-compare", help="folder for compare.html/PNG")

    confirm = command(
        "confirm",
        "retrain the top configurations with fresh seeds; keep the most robust",
        cmd_confirm,
    )
    confirm.add_argument("run_dir", help="a run directory, or the bucket URI `hpo run` printed")
    confirm.add_argument(
        "--top-k", type=int, default=3, help="configurations to retrain (default 3)"
    )
    confirm.add_argument(
        "--seeds", type=int, default=3, help="fresh seeds per configuration (default 3)"
    )
    confirm.add_argument("--address", help=run_address_help)
    confirm.add_argument("--quiet", action="store_true", help="no live trial table")
    submit_option(confirm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_environment()
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # said by the subcommand, so its usage (not hpo's) is what the user sees
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except SpecError as err:
        print(f"hpo: {err.render()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `hpo keys | head`: the reader has gone; nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # else Python's exit flush raises it again
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as err:
        # A second Ctrl-C skips Tune's graceful stop; the last saved state still resumes.
        run_dir = getattr(err, "run_dir", getattr(args, "run_dir", None))
        if run_dir is None and args.command == "run":
            print("\ninterrupted before the search started: nothing to resume", file=sys.stderr)
        elif args.command == "confirm":
            print(
                "\ninterrupted: nothing confirmed, best.yaml and best_model/ as they were; "
                f"`hpo confirm {shlex.quote(args.run_dir)}` starts it again",
                file=sys.stderr,
            )
        else:
            where = shlex.quote(run_dir) if run_dir else "RUN_DIR"
            print(f"\ninterrupted. Resume with: hpo resume {where}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
