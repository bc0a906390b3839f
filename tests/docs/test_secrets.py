"""Redaction of token-like environment values and store passwords."""

from __future__ import annotations

from releaser.docs.secrets import Redactor, secret_values


def test_token_like_names_and_dsn_passwords_are_secrets() -> None:
    env = {
        "GITHUB_TOKEN": "ghp_abcdef123456",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "DB_PASSWORD": "hunter22",
        "OPENAI_API_KEY": "sk-live-42424242",
        "GIT_AUTHOR_NAME": "releaser tests",
        "HOME": "/root",
        "SHORT_TOKEN": "1",
        "OTHER_URL": "postgresql://app:url-pass-9@db/prod",
    }
    values = secret_values(env, ["postgresql://rel:store%40pw@db:5432/releaser"])
    for v in (
        "ghp_abcdef123456",
        "wJalrXUtnFEMI",
        "hunter22",
        "sk-live-42424242",
        "url-pass-9",
        "store%40pw",
        "store@pw",
    ):
        assert v in values
    assert "releaser tests" not in values and "/root" not in values and "1" not in values


def test_redactor_replaces_secrets_in_text_urls_and_nested_values() -> None:
    r = Redactor.from_environment(
        "host=db user=rel password='s3cr et' dbname=x", env={"API_TOKEN": "tok-123456"}
    )
    assert r.text("use tok-123456 now") == "use *** now"
    assert "s3cr et" not in r.url("host=db user=rel password='s3cr et' dbname=x")
    assert r.value({"a": ["tok-123456", 3, {"k": "x tok-123456"}]}) == {
        "a": ["***", 3, {"k": "x ***"}]
    }
    assert not r.bytes_clean(b"... tok-123456 ...") and r.bytes_clean(b"clean")
