"""Access control (issue 20): roles and actions, salted password hashes, the shared-password sign-in with
its throttle, the role of an identity-provider account, and the ``auth hash`` command."""

from __future__ import annotations

import json

import pytest

from rflocal_core import access, serving
from rflocal_core.access import LOCAL_USER, SignInThrottle, User
from rflocal_core.errors import (
    AccessDeniedError,
    InvalidInputError,
    RFLocalInputError,
    ServingError,
    SignInThrottledError,
)

FAST = 1_000  # PBKDF2 rounds in these tests: the real default takes a third of a second per hash


@pytest.fixture
def no_auth_env(monkeypatch, tmp_path):
    """No password in the environment, an empty home (no ~/.streamlit/secrets.toml); returns a secrets file."""
    for plain, hashed in access.PASSWORD_ENV.values():
        monkeypatch.delenv(plain, raising=False)
        monkeypatch.delenv(hashed, raising=False)
    monkeypatch.delenv(serving.AUTH_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("", encoding="utf-8")
    return secrets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_roles_and_actions():
    viewer = User("vera", "viewer")
    assert access.allowed(viewer, "predict") and access.allowed(viewer, "view")
    for action in ("delete_run", "delete_dataset", "delete_scene", "train", "generate", "cancel", "ablate"):
        assert not access.allowed(viewer, action)
        with pytest.raises(AccessDeniedError, match=f"{action}: user 'vera' has the role 'viewer'"):
            access.require(viewer, action)
        access.require(LOCAL_USER, action)  # the command line may do everything
    assert isinstance(AccessDeniedError("x"), PermissionError) and isinstance(AccessDeniedError("x"), RFLocalInputError)
    with pytest.raises(InvalidInputError, match="action: 'format_disk' is not an action"):
        access.require(LOCAL_USER, "format_disk")
    with pytest.raises(InvalidInputError, match="role: 'admin' is not a role"):
        User("x", "admin")
    with pytest.raises(InvalidInputError, match="name:"):
        User(" padded", "viewer")


def test_hashes_are_salted_and_verified():
    one, two = access.hash_password("s3cret", iterations=FAST), access.hash_password("s3cret", iterations=FAST)
    assert one != two and one.startswith("pbkdf2_sha256$1000$")
    assert access.verify_password("s3cret", one) and access.verify_password("s3cret", two)
    assert not access.verify_password("s3cret ", one)
    assert not access.verify_password("", one)
    for bad in ("s3cret", "pbkdf2_sha256$1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"):  # a plain one; bad padding
        with pytest.raises(InvalidInputError, match="not a password hash") as refused:
            access.verify_password("s3cret", bad)
        assert bad not in str(refused.value) and refused.value.__cause__ is None
    with pytest.raises(InvalidInputError, match="password: empty"):
        access.hash_password("")


def test_one_role_per_password_from_env_and_secrets(no_auth_env, monkeypatch):
    throttle = SignInThrottle()
    files = [no_auth_env]

    def mode() -> str:
        return serving.auth_mode(files=files)

    def attempt(password: str, name: str = "") -> User:
        return access.sign_in(password, name=name, throttle=throttle, secrets=serving.read_secrets(files))

    assert mode() == "unset"
    with pytest.raises(AccessDeniedError, match="no password is configured"):
        attempt("anything")
    monkeypatch.setenv("RFLOCAL_PASSWORD", "edit-pw")
    monkeypatch.setenv("RFLOCAL_VIEWER_PASSWORD_HASH", access.hash_password("view-pw", iterations=FAST))
    assert mode() == "password"
    assert attempt("edit-pw") == User("editor", "editor")
    assert attempt("view-pw", name="Vera") == User("Vera", "viewer")
    with pytest.raises(InvalidInputError, match="name: 'local' stands for the command line"):
        attempt("edit-pw", name="Local")
    with pytest.raises(AccessDeniedError, match="password: wrong password"):
        attempt("edit-pw ")
    monkeypatch.delenv("RFLOCAL_PASSWORD")
    assert mode() == "password"  # a viewer password alone is a sign-in too (serving refuses nothing then)
    monkeypatch.setenv("RFLOCAL_PASSWORD_HASH", "my-plain-password")  # a mistake: the message names the variable
    with pytest.raises(InvalidInputError, match="^RFLOCAL_PASSWORD_HASH: password hash: not a password hash") as bad:
        attempt("view-pw ")
    assert "my-plain-password" not in str(bad.value)
    monkeypatch.delenv("RFLOCAL_PASSWORD_HASH")

    # The secrets file: [rflocal] password_hash (editors) and [rflocal.passwords] (one hash per role).
    monkeypatch.delenv("RFLOCAL_VIEWER_PASSWORD_HASH")
    no_auth_env.write_text(f'[rflocal.passwords]\nviewer = "{access.hash_password("file-view", iterations=FAST)}"\n',
                           encoding="utf-8")
    assert mode() == "password"
    no_auth_env.write_text(f'[rflocal]\npassword_hash = "{access.hash_password("file-edit", iterations=FAST)}"\n'
                           f'[rflocal.passwords]\nviewer = "{access.hash_password("file-view", iterations=FAST)}"\n',
                           encoding="utf-8")
    assert attempt("file-edit").role == "editor"
    assert attempt("file-view").role == "viewer"
    with pytest.raises(AccessDeniedError, match="password: wrong password"):
        attempt("edit-pw")
    no_auth_env.write_text('[rflocal.passwords]\nadmin = "x"\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"\[rflocal.passwords\]: 'admin' is not a role"):
        access.credentials(serving.read_secrets(files))
    with pytest.raises(ServingError, match=r"'admin' is not a role"):  # the server refuses to guess
        mode()


def test_wrong_tries_slow_further_tries_down():
    clock = Clock()
    throttle = SignInThrottle(free_tries=3, base_delay_s=2.0, max_delay_s=30.0, clock=clock)
    secrets = {"rflocal": {"password_hash": access.hash_password("right", iterations=FAST)}}

    def attempt(password: str, client: str = "10.0.0.9") -> User:
        return access.sign_in(password, client=client, throttle=throttle, secrets=secrets)

    for _ in range(3):  # the first few wrong tries cost nothing
        with pytest.raises(AccessDeniedError, match="wrong password$"):
            attempt("wrong")
    with pytest.raises(AccessDeniedError, match="wrong password; wait 2 s"):
        attempt("wrong")
    # While it waits, even the right password is refused (unchecked), and another client is not affected.
    with pytest.raises(SignInThrottledError, match="too many wrong tries; try again in 2 s") as refused:
        attempt("right")
    assert refused.value.retry_after_s == pytest.approx(2.0)
    assert attempt("right", client="10.0.0.10").role == "editor"
    clock.now += 2.1
    with pytest.raises(AccessDeniedError, match="wait 4 s"):
        attempt("wrong")
    clock.now += 4.1
    with pytest.raises(AccessDeniedError, match="wait 8 s"):
        attempt("wrong")
    for _ in range(5):
        clock.now += 60
        with pytest.raises(AccessDeniedError, match=r"wait \d+ s"):
            attempt("wrong")
    with pytest.raises(SignInThrottledError, match="try again in 30 s"):  # capped
        attempt("right")
    clock.now += 31
    assert attempt("right").role == "editor"
    with pytest.raises(AccessDeniedError, match="wrong password$"):  # a right one clears the count
        attempt("wrong")


def test_identity_provider_accounts_map_to_roles():
    secrets = {"rflocal": {"roles": {"editor": ["ana@lab.org", "group:rf-team"], "viewer": ["@lab.org"]}}}
    assert access.oidc_user({"email": "Ana@lab.org", "name": "Ana"}, secrets=secrets) == User("Ana", "editor")
    assert access.oidc_user({"email": "bo@lab.org"}, secrets=secrets) == User("bo@lab.org", "viewer")
    assert access.oidc_user({"email": "cy@x.org", "groups": ["rf-team"]}, secrets=secrets).role == "editor"
    with pytest.raises(AccessDeniedError, match="eve@x.org has no role"):
        access.oidc_user({"email": "eve@x.org"}, secrets=secrets)
    secrets["rflocal"]["roles"]["default"] = "viewer"
    assert access.oidc_user({"email": "eve@x.org"}, secrets=secrets).role == "viewer"


def test_an_address_the_provider_has_not_verified_gets_no_role_by_it():
    secrets = {"rflocal": {"roles": {"editor": ["ana@lab.org", "group:rf-team"], "viewer": ["@lab.org"]}}}
    for unverified in (False, "false", "False"):
        with pytest.raises(AccessDeniedError, match=r"ana@lab.org has no role \(the identity provider has not "):
            access.oidc_user({"email": "ana@lab.org", "email_verified": unverified}, secrets=secrets)
    assert access.oidc_user({"email": "ana@lab.org", "email_verified": True}, secrets=secrets).role == "editor"
    # a group comes from the provider's own directory: it still counts; so does the default
    assert access.oidc_user({"email": "ana@lab.org", "email_verified": False, "groups": ["rf-team"]},
                            secrets=secrets).role == "editor"
    secrets["rflocal"]["roles"]["default"] = "viewer"
    assert access.oidc_user({"email": "ana@lab.org", "email_verified": False}, secrets=secrets).role == "viewer"


def test_one_group_as_a_string_and_empty_entries():
    secrets = {"rflocal": {"roles": {"editor": ["group:rf-team", ""], "viewer": [" "]}}}
    assert access.oidc_user({"email": "cy@x.org", "groups": "rf-team"}, secrets=secrets).role == "editor"
    with pytest.raises(AccessDeniedError, match="this account has no role"):  # "" is nobody, not everyone
        access.oidc_user({"name": "No Address"}, secrets=secrets)
    with pytest.raises(AccessDeniedError, match="cy@x.org has no role"):  # "rf" is not a group of "rf-team"
        access.oidc_user({"email": "cy@x.org", "groups": "rf-team"},
                         secrets={"rflocal": {"roles": {"editor": ["group:r"]}}})


def test_cli_prints_a_hash_of_the_password_on_stdin(workspace, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    def run(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rflocal_core", "auth", "hash"], input=stdin, text=True,
                              capture_output=True, cwd=REPO_ROOT, timeout=60, check=False)

    done = run("correct horse\n")
    assert done.returncode == 0, done.stderr
    encoded = json.loads(done.stdout)["password_hash"]
    assert encoded.startswith(f"pbkdf2_sha256${access.HASH_ITERATIONS}$")
    assert access.verify_password("correct horse", encoded)
    empty = run("\n")
    assert empty.returncode == 2 and "password: empty" in empty.stderr


def _tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_core_refuses_a_viewer_and_changes_nothing(workspace):
    """The page is not the only guard: every call that changes the workspace or takes the cores refuses a viewer."""
    from rflocal_core import ablate, dataset, scene, train
    from rflocal_core.dataset import GenerationConfig
    from rflocal_core.dataset.table_import import import_table
    from rflocal_core.scene import ProceduralConfig, SceneConfig
    from rflocal_core.scene.importer import SceneImportConfig, import_scene

    scene.build_scene(SceneConfig(name="city", procedural=ProceduralConfig(size_m=240, seed=4)))
    (workspace / "datasets" / "data1").mkdir(parents=True)
    (workspace / "runs" / "run1").mkdir(parents=True)
    (workspace / "runs" / "run1" / "config.json").write_text("{}", encoding="utf-8")
    before = _tree(workspace)
    viewer = User("vera", "viewer")
    calls = {
        "delete_scene": lambda: scene.delete_scene("city", user=viewer),
        "delete_dataset": lambda: dataset.delete_dataset("data1", user=viewer),
        "delete_run": lambda: train.delete_run("run1", user=viewer),
        "build_scene": lambda: scene.build_scene(SceneConfig(name="city2"), user=viewer),
        "import_scene": lambda: import_scene(SceneImportConfig(name="imp", path="x.xml"), user=viewer),
        "generate": lambda: dataset.generate_dataset(GenerationConfig(name="d2", scenes=("city",)), user=viewer),
        "import_dataset": lambda: import_table(b"a,b\n1,2\n", name="t", columns={}, user=viewer),
        "train": lambda: train.train("data1", "knn", user=viewer),
        "resume": lambda: train.resume("run1", user=viewer),
        "ablate": lambda: ablate.run_study("features", "data1", user=viewer),
    }
    for action, call in calls.items():
        with pytest.raises(AccessDeniedError, match=f"^{action}: user 'vera' has the role 'viewer'"):
            call()
    assert _tree(workspace) == before
    scene.delete_scene("city", user=User("ed", "editor"))  # an editor may
    assert "city" not in [s["name"] for s in scene.list_scenes()]


def test_a_viewer_cannot_cancel_a_job():
    import threading

    from rflocal_core.jobs import REGISTRY

    release = threading.Event()

    def work(ctx):
        while not release.wait(0.01):
            ctx.check_cancelled()
        return "finished"

    job = REGISTRY.submit("test", "access", work)
    try:
        with pytest.raises(AccessDeniedError, match="^cancel: user 'vera'"):
            job.cancel(user=User("vera", "viewer"))
        assert not job.wait(0.2) and job.state == "running"
        job.cancel(user=User("ed", "editor"))
        assert job.wait(10) and job.state == "cancelled"
    finally:
        release.set()


def test_the_signed_in_user_is_the_actor_and_the_owner(workspace):
    """Roles and the audit log meet: a refused viewer leaves no trace of a delete, an editor's name is logged
    as who deleted or cancelled, and owns the jobs the page starts for them."""
    import threading

    from rflocal_core import audit, scene
    from rflocal_core.jobs import JobRegistry
    from rflocal_core.scene import ProceduralConfig, SceneConfig

    scene.build_scene(SceneConfig(name="city", procedural=ProceduralConfig(size_m=240, seed=4)))
    with pytest.raises(AccessDeniedError):
        scene.delete_scene("city", user=User("vera", "viewer"))
    scene.delete_scene("city", user=User("ed", "editor"))
    assert [(r["actor"], r["target"]) for r in audit.read_audit(action="delete")] == [("ed", "scene:city")]

    release = threading.Event()
    registry = JobRegistry(max_running=1, max_per_owner=1, max_queued=4)
    job = registry.submit("test", "owned", lambda ctx: release.wait(10), owner="ed")
    try:
        with pytest.raises(AccessDeniedError):
            job.cancel(user=User("vera", "viewer"))
        job.cancel(user=User("ed", "editor"))
    finally:
        release.set()
    assert job.wait(10)
    cancels = audit.read_audit(action="cancel")
    assert [(r["actor"], r["details"]["owner"]) for r in cancels] == [("ed", "ed")]
