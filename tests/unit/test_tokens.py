"""Admin tokens: minting, verifying, scopes, durations, and `dmrelay token`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import jwt
import pytest

from relay import cli
from relay.core.errors import Forbidden, Unauthorized
from relay.web.admin import tokens

SECRET = "unit-secret-" + "0123456789abcdef" * 4  # long enough for HS512 too


def test_a_minted_token_verifies_with_its_claims() -> None:
    before = int(time.time())
    claims = tokens.verify(SECRET, tokens.mint(SECRET, [tokens.READ], 900, subject="ci"))

    assert (claims["iss"], claims["sub"], claims["scope"]) == ("dmrelay", "ci", "relay:read")
    assert claims["exp"] - claims["iat"] == 900
    assert before <= claims["iat"] <= int(time.time())
    assert len(claims["jti"]) == 32


def test_every_token_has_its_own_id() -> None:
    first, second = (
        tokens.verify(SECRET, tokens.mint(SECRET, [tokens.READ], 60)) for _ in range(2)
    )

    assert first["jti"] != second["jti"]


def signed(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def valid_claims(**changes: object) -> dict:
    now = int(time.time())
    # Built at collection time: valid for an hour so a long run cannot expire it.
    claims = {"iss": "dmrelay", "sub": "ops", "iat": now, "exp": now + 3600, "scope": tokens.READ}
    return {**claims, **changes}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-jwt", "The admin token is missing or invalid."),
        (
            signed(valid_claims(), secret="some-other-secret-0123456789abcdef"),
            "The admin token is missing or invalid.",
        ),
        (signed(valid_claims(iss="someone-else")), "The admin token is missing or invalid."),
        (
            signed({k: v for k, v in valid_claims().items() if k != "scope"}),
            "The admin token is missing or invalid.",
        ),
        (signed(valid_claims(), algorithm="HS512"), "The admin token is missing or invalid."),
        (signed(valid_claims(iat=1, exp=2)), "The admin token has expired."),
    ],
    ids=["garbage", "wrong-secret", "wrong-issuer", "no-scope", "other-algorithm", "expired"],
)
def test_verify_refuses_bad_tokens(token: str, message: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        tokens.verify(SECRET, token)

    assert refused.value.message == message


def test_an_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode(valid_claims(scope=tokens.ADMIN), None, algorithm="none")

    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, unsigned)


def test_admin_implies_read_but_read_does_not_imply_admin() -> None:
    tokens.require_scope({"scope": "relay:admin"}, tokens.READ)
    tokens.require_scope({"scope": "relay:read relay:admin"}, tokens.ADMIN)

    with pytest.raises(Forbidden) as refused:
        tokens.require_scope({"scope": "relay:read"}, tokens.ADMIN)
    assert refused.value.message == "This action needs the relay:admin scope."


@pytest.mark.parametrize(
    ("scopes", "ttl"), [([], 60), (["relay:write"], 60), ([tokens.READ], 0), ([tokens.READ], -5)]
)
def test_mint_refuses_unknown_scopes_and_bad_lifetimes(scopes: list[str], ttl: int) -> None:
    with pytest.raises(ValueError):
        tokens.mint(SECRET, scopes, ttl)


def test_mint_refuses_more_than_a_year() -> None:
    with pytest.raises(ValueError, match="between 1 second and 365 days"):
        tokens.mint(SECRET, [tokens.READ], tokens.MAX_TTL_SECONDS + 1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("45", 45)]
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1w", "one hour"])
def test_parse_ttl_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        tokens.parse_ttl(text)


# -- dmrelay token -----------------------------------------------------------------------------
@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Set only the secret, and put back the logging that cli.main reconfigures."""
    monkeypatch.setenv("DMRELAY_SECRET_KEY", SECRET)
    for name in ("REDIS_URL", "DMRELAY_ORGS", "DMRELAY_ORGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_token_command_prints_a_token_needing_only_the_secret(
    token_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["token", "--scope", "relay:read", "--ttl", "1h", "--subject", "grafana"])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    claims = tokens.verify(SECRET, out.strip())
    assert (claims["sub"], claims["scope"]) == ("grafana", "relay:read")
    assert claims["exp"] - claims["iat"] == 3600


def test_token_command_takes_several_scopes_once_each(
    token_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--scope", "relay:read", "--scope", "relay:admin", "--scope", "relay:read"]

    assert cli.main(argv) == 0

    claims = tokens.verify(SECRET, capsys.readouterr().out.strip())
    assert (claims["scope"], claims["sub"]) == ("relay:read relay:admin", "operator")
    assert claims["exp"] - claims["iat"] == 3600  # the default lifetime


def test_token_command_without_a_secret_is_a_configuration_error(
    token_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DMRELAY_SECRET_KEY")

    code = cli.main(["token", "--scope", "relay:read"])

    assert code == 2
    assert capsys.readouterr() == (
        "",
        "dmrelay: configuration error: DMRELAY_SECRET_KEY: is not set\n",
    )


def test_token_command_refuses_a_bad_lifetime(
    token_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["token", "--scope", "relay:admin", "--ttl", "400d"])

    assert code == 2
    assert capsys.readouterr() == ("", "dmrelay: ttl must be between 1 second and 365 days\n")


def test_token_command_refuses_an_unknown_scope(
    token_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["token", "--scope", "relay:write"])

    assert exited.value.code == 2
    assert "invalid choice: 'relay:write'" in capsys.readouterr().err
