"""The JWT signing key: never one published in the repository, and a fresh installation
gets a random one of its own that every process started from it shares."""

import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from common.auth.security import create_access_token, decode_access_token
from common.models import Role
from common.settings import PLACEHOLDER_SECRET, CommonSettings
from tests.conftest import REPO_ROOT

PRODUCTION = {"environment": "production", "first_admin_password": "a-real-password-here"}


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_the_published_placeholder_is_refused_in_every_mode(
    environment: str, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="SHOP_JWT_SECRET is a value published"):
        CommonSettings(
            environment=environment,
            jwt_secret=PLACEHOLDER_SECRET,
            first_admin_password="a-real-password-here",
            state_dir=tmp_path,
        )


def test_every_secret_written_in_the_repository_is_refused(tmp_path: Path) -> None:
    """Whatever a config file or manifest here sets as the key (the k8s Secret, .env.example)
    must not start a service."""
    files = [REPO_ROOT / ".env.example", *sorted((REPO_ROOT / "deploy").rglob("*.yaml"))]
    values = []
    for path in files:
        for line in path.read_text().splitlines():
            if "SHOP_JWT_SECRET" in line and (":" in line or "=" in line):
                value = line.split("SHOP_JWT_SECRET", 1)[1].lstrip(" =:").strip().strip("\"'")
                if value and not line.lstrip().startswith("#"):
                    values.append(value)
    assert values, "the k8s Secret names a placeholder key"
    for value in values:
        with pytest.raises(ValidationError, match="SHOP_JWT_SECRET"):
            CommonSettings(jwt_secret=value, state_dir=tmp_path)


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        CommonSettings(jwt_secret="short-but-secret", state_dir=tmp_path)


def test_production_requires_an_explicit_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SHOP_JWT_SECRET must be set in production"):
        CommonSettings(**PRODUCTION, state_dir=tmp_path)  # type: ignore[arg-type]
    assert not (tmp_path / "jwt-secret").exists()
    settings = CommonSettings(**PRODUCTION, jwt_secret="k" * 48)  # type: ignore[arg-type]
    assert settings.jwt_secret.get_secret_value() == "k" * 48


def test_production_refuses_the_placeholder_admin_password() -> None:
    with pytest.raises(ValidationError, match="SHOP_FIRST_ADMIN_PASSWORD"):
        CommonSettings(environment="production", jwt_secret="k" * 48)


def test_a_fresh_installation_generates_its_own_key_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = CommonSettings(state_dir=state)
    key = first.jwt_secret.get_secret_value()
    assert len(key) >= 32 and key != PLACEHOLDER_SECRET
    assert stat.S_IMODE((state / "jwt-secret").stat().st_mode) == 0o600
    # A second process of the same installation (the other service) reads the same key,
    # so a token one service signs is accepted by the other.
    second = CommonSettings(state_dir=state)
    assert second.jwt_secret.get_secret_value() == key
    token, _ = create_access_token(user_id=1, role=Role.ADMIN, settings=first)
    assert decode_access_token(token, second) is not None
    # Another installation has another key: its tokens are worthless here.
    other = CommonSettings(state_dir=tmp_path / "elsewhere")
    assert other.jwt_secret.get_secret_value() != key
    assert decode_access_token(token, other) is None


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    """Both services (and several workers) may start at the same moment on a fresh checkout."""
    code = (
        "import sys; from pathlib import Path; from common.settings import CommonSettings; "
        "print(CommonSettings(state_dir=Path(sys.argv[1])).jwt_secret.get_secret_value())"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert all(p.returncode == 0 for p in processes)
    assert keys == {(tmp_path / "jwt-secret").read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["jwt-secret"]


def test_a_token_signed_with_the_placeholder_is_refused(tmp_path: Path) -> None:
    """The forgery the issue found: an admin token signed with the public placeholder."""
    settings = CommonSettings(state_dir=tmp_path)
    forged = jwt.encode(
        {"sub": "1", "role": "admin", "jti": "x", "exp": 4_000_000_000},
        PLACEHOLDER_SECRET,
        algorithm="HS256",
    )
    assert decode_access_token(forged, settings) is None
