"""Checkpoints reach a run on local disk by hard link, not by copy.

Ray persists every reported checkpoint by copying each byte into the run's storage (its
`StorageContext.persist_current_checkpoint`), then the trial deletes its own folder. For a
fine-tuning checkpoint (weights plus Adam's two moments: three times the model) that copy was
the largest share of a warm trial's overhead (0.2-0.3 s per 180 MB checkpoint on 2 cores, and it
briefly needs the disk space twice). When the storage is a local path on the same filesystem,
linking the files gives the same folder in microseconds. Anything else (a bucket, another
device, a Ray whose internals moved) keeps Ray's copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

logger = logging.getLogger(__name__)
_MARK = "_hpo_links_local_checkpoints"


def link_checkpoints_into_local_storage() -> None:
    """Make Ray persist local checkpoints into local storage by hard links (idempotent)."""
    try:
        from ray.train._internal.storage import StorageContext
    except ImportError:  # Ray moved it: its own copy still works
        return
    copy = getattr(StorageContext, "persist_current_checkpoint", None)
    if copy is None or getattr(copy, _MARK, False):
        return

    def persist_current_checkpoint(self: Any, checkpoint: Any) -> Any:
        linked = _link(self, checkpoint)
        return linked if linked is not None else copy(self, checkpoint)

    setattr(persist_current_checkpoint, _MARK, True)
    StorageContext.persist_current_checkpoint = persist_current_checkpoint  # type: ignore[method-assign]


def _link(storage: Any, checkpoint: Any) -> Any:
    """The checkpoint linked into `storage.checkpoint_fs_path`, or None to fall back to copy."""
    import pyarrow.fs

    local = pyarrow.fs.LocalFileSystem
    if not (
        isinstance(getattr(storage, "storage_filesystem", None), local)
        and isinstance(checkpoint.filesystem, local)
    ):
        return None
    destination = storage.checkpoint_fs_path
    if os.path.exists(destination):
        return None  # never link over something Ray already wrote there
    try:
        check = getattr(storage, "_check_validation_file", None)
        if check is not None:
            check()  # a local path not shared with this node: let Ray's copy raise its error
        link_tree(checkpoint.path, destination)
    except Exception as err:  # any failure means: copy, as Ray would
        shutil.rmtree(destination, ignore_errors=True)
        logger.debug("hard-linking %s failed (%s); copying", checkpoint.path, err)
        return None
    return type(checkpoint)(filesystem=storage.storage_filesystem, path=destination)


def link_tree(source: str, destination: str) -> None:
    """`destination` as a new tree of hard links to the files under `source`."""
    for root, _, files in os.walk(source):
        target = os.path.join(destination, os.path.relpath(root, source))
        os.makedirs(target, exist_ok=root != source)
        for name in files:
            os.link(os.path.join(root, name), os.path.join(target, name))
