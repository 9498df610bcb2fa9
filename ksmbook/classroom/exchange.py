"""nbgrader's collect, made safe against students on the same machine.

nbgrader's own ``collect`` takes the newest submission filed under each name in the
exchange's inbound folder, whoever made it: ``nbgrader submit --student=bob`` run by alice
replaces bob's submission (the owner check only logs a warning), and it copies a submission by
following symbolic links, so a submission that is a link to the teacher's files collects the
teacher's files. ``ExchangeCollect`` (the teacher's configuration on the hub sets
``c.ExchangeFactory.collect`` to it) files a submission only

- when the OS user who owns it is the student it is filed under (``check_owner``, on by
  default; a submission made in another's name is logged as such and left out, so the
  student's own newest submission is collected), and
- when it holds nothing but folders and regular files that student owns (no links, no
  devices or pipes), read without following any link, so nothing can be swapped in between
  the check and the copy.

On Kubernetes every student's pod runs as the same uid, so ownership says nothing; there each
pod mounts only its own folder of the inbound (classroom/kubernetes/), ``inbound/NAME/``, and
``per_student_inbound`` makes the collect read submissions from there, filing each only under
the name of the folder it was found in.

Limits as nbgrader's: files larger than ``CourseDirectory.max_file_size`` are left out, and a
submission larger than ``CourseDirectory.max_dir_size`` is refused.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import pwd
import shutil
import stat
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook, MissingEntry  # type: ignore[import-untyped]
from nbgrader.exchange.default.collect import (  # type: ignore[import-untyped]
    ExchangeCollect as _Collect,
)
from nbgrader.exchange.default.collect import groupby
from traitlets import Bool

__all__ = ["ExchangeCollect", "SubmissionRefused", "copy_submission"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SubmissionRefused(Exception):
    """A submission that is not collected; the message says why."""


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def copy_submission(src: str, dest: str | None, *, uid: int | None, max_file: int = 0,
                    max_total: int = 0, exclude: list[str] | None = None,
                    include: list[str] | None = None) -> list[str]:
    """Copy the submission folder `src` to `dest` (None: only check it) without following
    any link.

    Every entry must be a folder or a regular file owned by `uid` (None: any owner).
    Files over `max_file` bytes are skipped (and named in the returned list), a submission
    over `max_total` bytes raises, as do links, devices, pipes and others' files."""
    skipped: list[str] = []
    total = 0

    def walk(fd: int, rel: str, out: Path | None) -> None:
        nonlocal total
        st = os.fstat(fd)
        if uid is not None and st.st_uid != uid:
            raise SubmissionRefused(f"{rel or '.'} is owned by {_owner_name(st.st_uid)}")
        if out is not None:
            out.mkdir(exist_ok=rel != "")
        with os.scandir(fd) as entries:
            names = sorted(e.name for e in entries)
        for name in names:
            path = f"{rel}/{name}" if rel else name
            if exclude and any(fnmatch.fnmatch(name, g) for g in exclude):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, _DIR, dir_fd=fd)
                try:
                    walk(sub, path, None if out is None else out / name)
                finally:
                    os.close(sub)
                continue
            if not stat.S_ISREG(st.st_mode):
                raise SubmissionRefused(f"{path} is not a regular file (a link, device or pipe)")
            if include and not any(fnmatch.fnmatch(name, g) for g in include):
                continue
            try:
                f = os.open(name, _FILE, dir_fd=fd)
            except OSError as e:  # ELOOP: became a link since
                raise SubmissionRefused(f"{path}: {e.strerror}") from None
            try:
                st = os.fstat(f)
                if not stat.S_ISREG(st.st_mode):
                    raise SubmissionRefused(f"{path} is not a regular file")
                if uid is not None and st.st_uid != uid:
                    raise SubmissionRefused(f"{path} is owned by {_owner_name(st.st_uid)}")
                if max_file and st.st_size > max_file:
                    skipped.append(path)
                    continue
                total += st.st_size
                if max_total and total > max_total:
                    raise SubmissionRefused(f"larger than {max_total} bytes")
                if out is None:
                    continue
                with open(out / name, "wb") as w:
                    while chunk := os.read(f, 1 << 20):
                        w.write(chunk)
            finally:
                os.close(f)

    try:
        fd = os.open(src, _DIR)
    except OSError as e:  # ELOOP, ENOTDIR: a link or a file where a folder should be
        raise SubmissionRefused(f"not a folder: {e.strerror}") from None
    try:
        walk(fd, "", None if dest is None else Path(dest))
    finally:
        os.close(fd)
    return skipped


class ExchangeCollect(_Collect):
    """nbgrader's collect, filing each submission only under its owner's name (see the
    module docstring)."""

    per_student_inbound = Bool(
        False, help="Submissions are in inbound/NAME/ (one folder per student, the only one "
                    "that student can write): file each only under NAME.").tag(config=True)

    def _genuine(self, record: dict[str, Any]) -> bool:
        path = os.path.join(self.inbound_path, record["filename"])
        if self.per_student_inbound:
            folder = record["filename"].split("/", 1)[0]
            if folder != record["username"]:
                self.log.error("%s claims to be submitted by %s but is in %s's folder: not "
                               "collected", path, record["username"], folder)
                return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            self.log.error("%s is not a folder (a link?): not collected", path)
            return False
        owner = _owner_name(st.st_uid)
        if self.check_owner and not self.per_student_inbound and owner != record["username"]:
            self.log.error("%s claims to be submitted by %s but is owned by %s: not "
                           "collected", path, record["username"], owner)
            return False
        try:
            self._copy(path, None, record["username"])
        except SubmissionRefused as e:
            self.log.error("%s: not collected: %s", path, e)
            return False
        return True

    def _copy(self, src: str, dest: str | None, student: str) -> list[str]:
        owned = self.check_owner and not self.per_student_inbound
        uid = pwd.getpwnam(student).pw_uid if owned else None
        return copy_submission(
            src, dest, uid=uid, max_file=int(1000 * (self.coursedir.max_file_size or 0)),
            max_total=int(1000 * (self.coursedir.max_dir_size or 0)),
            exclude=list(self.coursedir.ignore or []),
            include=list(self.coursedir.include or []))

    def init_src(self) -> None:
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        student = self.coursedir.student_id or "*"
        claimed = "*" if student == "*" else glob.escape(student)
        pattern = f"{claimed}+{glob.escape(self.coursedir.assignment_id)}+*"
        if self.per_student_inbound:
            pattern = os.path.join("*", pattern)
        records = []
        for path in glob.glob(os.path.join(glob.escape(self.inbound_path), pattern)):
            record = self._path_to_record(path)
            record["filename"] = os.path.relpath(path, self.inbound_path)
            if self._genuine(record):
                records.append(record)
        usergroups = groupby(records, lambda item: item["username"])
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        self.src_records = []
        for group in usergroups.values():
            ordered = self._sort_by_timestamp(group)
            if self.duedate is not None and self.before_duedate:
                early = [r for r in ordered if r["timestamp"] <= self.duedate]
                ordered = early or ordered
            self.src_records.append(ordered[0])

    def do_copy(self, src: str, dest: str, log: Any = None) -> None:
        try:
            skipped = self._copy(src, dest, self._collecting)
        except SubmissionRefused as e:
            shutil.rmtree(dest, ignore_errors=True)
            self.log.error("%s: not collected: %s", src, e)
            return
        for path in skipped:
            self.log.warning("Ignoring file too large '%s' (see config option "
                             "CourseDirectory.max_file_size)", os.path.join(src, path))

    def copy_files(self) -> None:
        # do_copy needs to know whose submission it copies (nbgrader passes only paths).
        records = list(self.src_records)
        if not records:
            super().copy_files()  # nbgrader's "No submissions" warning
            return
        for rec in records:
            self._collecting = rec["username"]
            self.src_records = [rec]
            super().copy_files()
        self.src_records = records
