"""The class hub's authenticator and spawners (loaded by classroom/jupyterhub_config.py).

``ClassAuthenticator``: Native Authenticator (sign-up, the teacher approves) with the teacher's
account created beforehand by ``python -m ksmbook classroom hub-admin`` (the hub does not start
without it, and nobody can sign up under the teacher's name), the account rules of
``ksmbook.classroom.hub`` at sign-up, at approval and at login, and the password length and
lockout set by the hub's configuration.

``StudentSpawner`` (local processes) and ``StudentSystemdSpawner`` (systemd units): each
student's server runs as the OS user of the student's name, created on first start with a
private home; never as an account that this hub did not create. ``StudentSpawner`` run by a
hub that is not root runs every server as the hub's own user (test mode only).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LocalBase, admin_users_scope
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import HasTraits, Unicode

from .hub import RESERVED, AccountError, account_problem, ensure_os_user

__all__ = ["ClassAuthenticator", "StudentSpawner", "StudentSystemdSpawner"]


class ApproveHandler(LocalBase):
    """/hub/authorize/NAME: approve (or withdraw the approval of) a sign-up, refusing a name
    that is reserved or an account of this machine."""

    @admin_users_scope
    async def get(self, slug: str) -> None:
        info = UserInfo.find(self.db, slug)
        if info is None:
            raise web.HTTPError(404)
        if not info.is_authorized:
            problem = self.authenticator.account_problem(slug, existing_ok=False)
            if problem:
                self.log.warning("approval of %s refused: %s", slug, problem)
                raise web.HTTPError(403, f"not approved: {problem}")
        UserInfo.change_authorization(self.db, slug)
        self.redirect(self.hub.base_url + "authorize#" + slug)


class ClassAuthenticator(NativeAuthenticator):
    """Native Authenticator with the class hub's account rules (see the module docstring)."""

    admin_password_hint = Unicode(
        "sudo .venv/bin/python -m ksmbook classroom hub-admin --password-file FILE",
        config=True, help="How to create the teacher's account (said when it is missing).")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        missing = [n for n in sorted(self.admin_users)
                   if (info := UserInfo.find(self.db, n)) is None or not info.is_authorized]
        if missing:
            raise SystemExit(f"the teacher's hub account {', '.join(missing)} does not exist: "
                             f"create it first ({self.admin_password_hint})")

    @property
    def reserved(self) -> frozenset[str]:
        return RESERVED | frozenset(self.admin_users)

    def account_problem(self, name: str, *, existing_ok: bool) -> str | None:
        if name in self.admin_users:  # the teacher's own account, made by hub-admin
            return account_problem(name, reserved=RESERVED - {name}, existing_ok=True)
        return account_problem(name, reserved=self.reserved, existing_ok=existing_ok)

    def validate_username(self, username: str) -> bool:
        # Called at sign-up, when an admin adds a user, and at every login.
        if self.account_problem(username, existing_ok=True):
            return False
        return bool(super().validate_username(username))

    def create_user(self, username: str, password: str, **kwargs: Any) -> Any:
        name = self.normalize_username(username)
        problem = self.account_problem(name, existing_ok=False)
        if problem or name in self.admin_users:
            self.log.warning("sign-up of %r refused: %s", name, problem or "the teacher's name")
            return None
        return super().create_user(username, password, **kwargs)

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        handlers: list[tuple[str, Any]] = super().get_handlers(app)
        return [(path, ApproveHandler if path == r"/authorize/([^/]*)" else handler)
                for path, handler in handlers]


class _OsUsers(HasTraits):
    """Creates the OS user of the student's name before their server starts (as root)."""

    homes = Unicode("/home", config=True, help="The parent folder of the students' homes.")
    user: Any
    log: Any

    async def _ensure_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            await asyncio.to_thread(ensure_os_user, self.user.name, Path(self.homes))
        except AccountError as e:
            self.log.error("not starting %s's server: %s", self.user.name, e)
            raise web.HTTPError(403, str(e)) from None


class StudentSpawner(_OsUsers, LocalProcessSpawner):
    """A local process per student, as the student's own OS user (as root), or as the hub's
    user with a home below `homes` (not root: no isolation between students)."""

    async def start(self) -> Any:
        await self._ensure_user()
        return await super().start()

    def _shared(self) -> bool:
        return os.geteuid() != 0

    def make_preexec_fn(self, name: str) -> Any:
        if not self._shared():
            return super().make_preexec_fn(name)
        home = str(Path(self.homes) / name)

        def preexec() -> None:
            os.makedirs(home, 0o700, exist_ok=True)
            os.chdir(home)
        return preexec

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        if not self._shared():
            return dict(super().user_env(env))
        env.update(USER=self.user.name, HOME=str(Path(self.homes) / self.user.name),
                   SHELL="/bin/bash")
        return env

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        if self._shared():
            return paths
        return dict(await super().move_certs(paths))


try:
    from systemdspawner import SystemdSpawner
except ImportError:  # pragma: no cover - the classroom extra installs it
    StudentSystemdSpawner: Any = None
else:
    class StudentSystemdSpawner(_OsUsers, SystemdSpawner):  # type: ignore[no-redef]
        """A systemd unit per student, as the student's own OS user (created on first start),
        with the unit's memory and CPU limits."""

        async def start(self) -> Any:
            await self._ensure_user()
            return await super().start()
