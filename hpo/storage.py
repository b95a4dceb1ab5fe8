"""Where a run directory lives: a local (or shared) folder, or an s3:// / gs:// URI.

For a URI, Ray Tune writes the experiment (trials, checkpoints, state) to the bucket itself
(through pyarrow), while hpo's own files are written to a local mirror first and uploaded at the
end: a results file is never half-written in the bucket, and export reads a local checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from hpo.errors import SpecError
from hpo.paths import carries_credentials, is_remote_uri

# hpo's own files in a run directory (Ray's files are Ray's to write).
OWN_FILES = (
    "spec.yaml",
    "data.yaml",
    "environment.yaml",
    "trials.csv",
    "evaluations.csv",
    "best.yaml",
    "pareto.csv",
    "scheduler_notes.txt",
    "confirm.yaml",
    "best_model",
    "errors",
)
# ... and those a reader of the run needs, without the exported model (the big one).
RECORD_FILES = tuple(name for name in OWN_FILES if name != "best_model")


def mirror_root() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "hpo", "runs")


class RunLocation:
    """A run directory, as Ray sees it (`path`) and as hpo writes it (`local`)."""

    def __init__(self, storage: str, name: str) -> None:
        self.name = name
        self.remote = is_remote_uri(storage)
        # An S3-compatible store names its endpoint in the URI's query (pyarrow's form):
        # s3://bucket/runs?endpoint_override=minio:9000&scheme=http
        base, sep, query = storage.partition("?")
        if self.remote:
            self.path = f"{base.rstrip('/')}/{name}{sep}{query}"
        else:
            self.path = os.path.join(storage, name)
        self.local = os.path.join(mirror_root(), name) if self.remote else self.path

    @property
    def lockable(self) -> str | None:
        """The folder whose lock file keeps a second driver out (hpo.driver_lock); None for a
        bucket run: a bucket has no locks, and its local mirror is only a cache."""
        return None if self.remote else self.local

    @classmethod
    def at(cls, run_dir: str) -> RunLocation:
        """The location of an existing run directory, given as a local path or a bucket URI
        (the form `hpo run` prints)."""
        if not is_remote_uri(run_dir):
            path = os.path.abspath(run_dir)
            return cls(os.path.dirname(path), os.path.basename(path))
        if carries_credentials(run_dir):  # said without the URI: it would echo the key
            raise SpecError(
                [
                    "RUN_DIR: the URI carries bucket credentials; set them in the environment "
                    "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) instead"
                ]
            )
        base, sep, query = run_dir.partition("?")
        parent, _, name = base.rstrip("/").rpartition("/")
        return cls(f"{parent}{sep}{query}", name)

    def _fs(self) -> tuple[Any, str]:
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.path)

    def exists(self) -> bool:
        if not self.remote:
            return os.path.exists(self.path)
        import pyarrow.fs

        fs, path = self._fs()
        return bool(fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound)

    def localize(self, checkpoint_path: str) -> str:
        """A checkpoint path in the bucket -> the same checkpoint in the local mirror."""
        if not self.remote:
            return checkpoint_path
        _, root = self._fs()
        if checkpoint_path.startswith(root):
            return os.path.join(self.local, checkpoint_path[len(root) :].lstrip("/"))
        return checkpoint_path

    def pull(self) -> None:
        """Copy the experiment from the bucket into the local mirror (after the search)."""
        if self.remote:
            import pyarrow.fs

            fs, path = self._fs()
            pyarrow.fs.copy_files(
                path,
                self.local,
                source_filesystem=fs,
                destination_filesystem=pyarrow.fs.LocalFileSystem(),
            )

    def fetch_own_files(self) -> None:
        """Refresh the local mirror with hpo's files from the bucket (spec, data report, the
        versions the search ran with); the rest of the mirror goes, but for W&B's files."""
        if self.remote:
            self.download(self.local, ("spec.yaml", "data.yaml", "environment.yaml"), fresh=True)

    def download(self, dest: str, names: Iterable[str], fresh: bool = False) -> None:
        """Copy those of hpo's files and folders `names` that the bucket run has into `dest`
        (`fresh`: emptied first but for W&B's files, once the run is found); a URI that holds
        no run gets one clear message and leaves `dest` as it was."""
        from hpo.runinfo import SPEC_FILE

        try:
            found = self.exists()
            if found:
                if fresh:
                    _clear_mirror(dest)
                self._copy_from_bucket(dest, names)
        except (OSError, ValueError) as err:  # unreachable, refused, no bucket, bad URI option
            raise SpecError([f"{self.path}: cannot read the run ({err})"]) from None
        if not found:
            raise SpecError([f"{self.path}: no such run directory"])
        if not os.path.isfile(os.path.join(dest, SPEC_FILE)):
            raise SpecError([f"{self.path}: not a run directory (no {SPEC_FILE})"])

    def _copy_from_bucket(self, dest: str, names: Iterable[str]) -> None:
        import pyarrow.fs

        fs, path = self._fs()
        os.makedirs(dest, exist_ok=True)
        for name in names:
            info = fs.get_file_info(f"{path}/{name}")
            files = [info]
            if info.type == pyarrow.fs.FileType.Directory:
                files = fs.get_file_info(pyarrow.fs.FileSelector(info.path, recursive=True))
            for file in files:
                if file.type != pyarrow.fs.FileType.File:
                    continue
                target = os.path.join(dest, file.path[len(path) :].lstrip("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)  # pyarrow makes no folders
                pyarrow.fs.copy_files(
                    file.path,
                    target,
                    source_filesystem=fs,
                    destination_filesystem=pyarrow.fs.LocalFileSystem(),
                )

    def remove(self) -> None:
        """Delete the run directory (a bucket run's too, and its local mirror): a search that
        never started leaves nothing that blocks its name."""
        shutil.rmtree(self.local, ignore_errors=True)
        if self.remote:
            fs, path = self._fs()
            with contextlib.suppress(OSError):
                fs.delete_dir(path)

    def prune_checkpoints(self, folder: str, kept: str | None) -> None:
        """Delete the checkpoints of the trials under `folder` in the bucket but `kept` (its
        path in the local mirror); a local run's are pruned where they are."""
        if not self.remote:
            return
        import pyarrow.fs

        fs, path = self._fs()
        directory = pyarrow.fs.FileType.Directory
        trials = fs.get_file_info(pyarrow.fs.FileSelector(f"{path}/{folder}", allow_not_found=True))
        for trial in (t for t in trials if t.type == directory):
            for entry in fs.get_file_info(pyarrow.fs.FileSelector(trial.path)):
                is_checkpoint = entry.type == directory and entry.base_name.startswith(
                    "checkpoint_"
                )
                if is_checkpoint and not _same_path(self.localize(entry.path), kept):
                    with contextlib.suppress(OSError):
                        fs.delete_dir(entry.path)

    def push(self) -> None:
        """Upload hpo's own files from the local mirror to the bucket."""
        if not self.remote:
            return
        import pyarrow.fs

        fs, path = self._fs()
        local = pyarrow.fs.LocalFileSystem()
        for name in OWN_FILES:
            src = os.path.join(self.local, name)
            if os.path.exists(src):
                pyarrow.fs.copy_files(
                    src, f"{path}/{name}", source_filesystem=local, destination_filesystem=fs
                )


def _same_path(path: str, other: str | None) -> bool:
    return other is not None and os.path.normpath(path) == os.path.normpath(other)


def _clear_mirror(folder: str) -> None:
    """Empty a local mirror, but for W&B's offline runs: they are in no bucket, and `wandb sync`
    has yet to upload them (a resume or a confirm on the machine that searched finds them)."""
    if not os.path.isdir(folder):
        return
    for entry in os.scandir(folder):
        if entry.name == "wandb":
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            os.remove(entry.path)


@contextlib.contextmanager
def readable_run(run_dir: str) -> Iterator[str]:
    """A run directory to read hpo's files from (report, compare): a local one as it is; for a
    bucket URI, a temporary folder named after the run with its files (not its model), removed
    afterwards. Never the local mirror, which a live search of the same name may be writing."""
    if not is_remote_uri(run_dir):
        yield run_dir
        return
    location = RunLocation.at(run_dir)
    with tempfile.TemporaryDirectory(prefix="hpo-read-") as folder:
        local = os.path.join(folder, location.name)
        location.download(local, RECORD_FILES)
        yield local
