"""Where spec paths point: local files, `package:` folders inside installed packages, URIs."""

from __future__ import annotations

import importlib.util
import json
import os

PACKAGE_SCHEME = "package:"
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "hdfs://")
# In a job that `hpo resume --submit` or `hpo confirm --submit` started: each data file the run's
# spec names (on the submitting machine) -> the copy the job carries (hpo.jobs).
DATA_SHIPPED_ENV = "HPO_DATA_SHIPPED"


def is_remote_uri(value: str) -> bool:
    return value.startswith(REMOTE_SCHEMES)


def job_copy(path: str) -> str:
    """The data file to read for `path`: the job's copy of it where the job carries one
    (DATA_SHIPPED_ENV), else `path` itself."""
    shipped = os.environ.get(DATA_SHIPPED_ENV)
    return str(json.loads(shipped).get(path, path)) if shipped else path


# pyarrow reads bucket credentials from a URI too (S3's and Azure's query options, and the
# user part: s3://KEY:SECRET@bucket); hpo prints and saves URIs.
CREDENTIAL_QUERY_KEYS = (
    "access_key",
    "secret_key",
    "session_token",
    "account_key",
    "client_secret",
    "sig",  # an Azure SAS token's signature
)


def carries_credentials(uri: str) -> bool:
    """Whether a bucket URI holds credentials (which hpo would print and save)."""
    base, _, query = uri.partition("?")
    keys = {part.partition("=")[0] for part in query.split("&")}
    authority = base.partition("://")[2].partition("/")[0]
    return "@" in authority or bool(keys & set(CREDENTIAL_QUERY_KEYS))


def looks_like_path(value: str) -> bool:
    """Written as a path (so not a Hub id): absolute, relative with ./ or ../, or home."""
    return value.startswith(("/", "./", "../", "~")) or os.sep + os.sep in value


def package_folder(name: str) -> str | None:
    """The folder of an installed package, found without importing it."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return str(next(iter(found.submodule_search_locations)))


def resolve_path(value: str, problems: list[str], key: str) -> str | None:
    """`package:NAME/sub/path` -> a path inside that installed package; local paths -> absolute.

    Values that are neither (Hub ids) come back unchanged. Problems name `key`.
    """
    if value.startswith(PACKAGE_SCHEME):
        name, _, rest = value[len(PACKAGE_SCHEME) :].partition("/")
        folder = package_folder(name)
        if folder is None:
            problems.append(f"{key}: package `{name}` is not installed (pip install it)")
            return None
        path = os.path.join(folder, rest)
        if not os.path.exists(path):
            problems.append(f"{key}: `{rest}` is not in package `{name}` ({folder})")
            return None
        return path
    expanded = os.path.expanduser(value)
    if os.path.exists(expanded) or looks_like_path(value):
        return os.path.abspath(expanded)
    return value


def output_folder(path: str, flag: str = "--out") -> str:
    """Create the folder `path` names for a command's output (a report, a comparison), or say
    in one line why it cannot be: a file is there, or the place cannot be written."""
    from hpo.errors import SpecError

    if os.path.exists(path) and not os.path.isdir(path):
        raise SpecError([f"{flag} {path}: is a file; give a folder to write into"])
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise SpecError([f"{flag} {path}: cannot create the folder ({error.strerror})"]) from None
    return path
