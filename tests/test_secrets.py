"""Credentials: which names are secret, what experiments see, redaction in logs (also across pieces)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from overnight.process.logsink import Sink
from overnight.secrets import REDACTED, Secrets, is_secret

NOT_CREDENTIALS = ["HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE", "TOKENIZERS_PARALLELISM",
                   "AWS_REGION", "OPENAI_BASE_URL", "PATH", "PWD", "KEYRING_BACKEND", "MONKEY_PATCH",
                   "AIDER_MAP_TOKENS", "MAX_TOKENS"]  # fmt: skip


CREDENTIALS = ["OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MY_TOKEN", "DB_PASSWORD",
               "GITHUB_PAT", "ANTHROPIC_AUTH_TOKEN", "SSH_AUTH_SOCK", "GOOGLE_APPLICATION_CREDENTIALS", "apiKey",
               "STRIPE_KEY2", "smtp_pass", "ngrok_authtoken"]  # fmt: skip


@pytest.mark.parametrize("name", NOT_CREDENTIALS)
def test_a_name_that_merely_contains_a_credential_word_is_no_credential(name: str) -> None:
    assert not is_secret(name)


@pytest.mark.parametrize("name", CREDENTIALS)
def test_credential_words_are_whole_words_of_the_name(name: str) -> None:
    assert is_secret(name)


def test_experiments_keep_their_settings_and_only_credentials_are_redacted() -> None:
    env = {name: f"value-of-{name}" for name in NOT_CREDENTIALS + CREDENTIALS}
    found = Secrets.of(env)
    kept = found.scrub(env)
    assert [n for n in NOT_CREDENTIALS if n in kept] == [n for n in NOT_CREDENTIALS if n != "OPENAI_BASE_URL"]
    assert not set(CREDENTIALS) & set(kept)  # the LLM providers' settings go too, the credentials of course
    assert found.redact(env["OPENAI_BASE_URL"] + env["HF_HOME"] + env["HF_TOKEN"]) == (
        env["OPENAI_BASE_URL"] + env["HF_HOME"] + REDACTED
    )
    assert set(found.scrub(env, keep=["HF_TOKEN"], prefixes=("OPENAI_",))) - set(kept) == {
        "HF_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL"
    }  # fmt: skip


def test_a_secret_split_across_pieces_is_redacted_and_the_rest_is_not_held_back() -> None:
    redactor = Secrets.of({"MY_TOKEN": "tok-abcdefgh", "API_KEY": "abcdefgh"}).stream()
    out = [redactor.feed(piece) for piece in (b"line 1\n", b"x tok-ab", b"cd", b"efgh y ab", b"cdefgh", b" tok-a")]
    assert out[0] == b"line 1\n"  # nothing that could start a secret: written at once
    assert b"".join(out) + redactor.end() == b"line 1\nx [redacted] y [redacted] tok-a"
    assert not any(b"abcdefgh" in b"".join(out[: i + 1]) for i in range(len(out)))


def test_a_sink_writes_nothing_after_finish_even_if_the_stream_goes_on(tmp_path: Path, monkeypatch) -> None:
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    read_end, write_end = os.pipe()
    path = tmp_path / "log"
    with open(path, "ab", buffering=0) as file:
        stream = open(read_end, "rb")  # noqa: SIM115 (the sink closes it; closing it here would wait on its read)
        sink = Sink(stream, file, cap=0, secrets=Secrets.of({"MY_TOKEN": "tok-abcdefgh"}))
        os.write(write_end, b"before tok-abc")  # an escaped process keeps the pipe open
        deadline = time.monotonic() + 60
        while path.read_bytes() != b"before " and time.monotonic() < deadline:  # the sink read it ("tok-abc" held back)
            time.sleep(0.01)
        sink.finish(timeout=0.1)
    os.write(write_end, b"after\n")  # the file is closed now: the copying thread must not write
    os.close(write_end)
    assert sink._copying.wait(5)  # the copy ended, and raised nothing (wait() would raise it)
    assert raised == [] and sink.error is None
    assert path.read_bytes() == b"before tok-abc"
