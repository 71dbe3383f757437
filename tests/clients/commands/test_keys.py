"""``instrumentd keys``'s command line: owner-only certificates never overwritten, the files printed with how
to use them, clients added later with ``add-client``, one-line usage errors."""

from __future__ import annotations

import stat

import pytest

from instrumentd.clients.cli import main

from ...conftest import one_line_error


def test_keys_command_makes_owner_only_certificates_and_never_overwrites(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert main(["keys", str(folder), "--client", "rec", "--client", "dash"]) == 0
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == ["clients/dash.key", "clients/rec.key", "dash.key", "dash.key_secret", "rec.key",
                     "rec.key_secret", "server.key", "server.key_secret"]
    for secret in folder.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    before = (folder / "server.key_secret").read_bytes()
    capsys.readouterr()
    assert main(["keys", str(folder)]) == 2
    one_line_error(capsys.readouterr().err, "keys", "server.key", "never overwritten")
    assert (folder / "server.key_secret").read_bytes() == before
    assert main(["keys", str(tmp_path / "k2"), "--client", "../evil"]) == 2
    one_line_error(capsys.readouterr().err, "keys", "'../evil'")


def test_the_command_prints_the_files_and_how_to_use_them(tmp_path, capsys):
    assert main(["keys", str(tmp_path / "k")]) == 0
    out, err = capsys.readouterr()
    assert sorted(out.split()) == sorted(str(tmp_path / "k" / n) for n in
                                         ("server.key", "server.key_secret", "client.key", "client.key_secret",
                                          "clients/client.key"))
    assert f"--curve-key {tmp_path / 'k' / 'server.key_secret'}" in err and "--client-key" in err
    assert main(["keys", "add-client", "x"]) == 2
    one_line_error(capsys.readouterr().err, "keys", "usage: instrumentd keys add-client NAME --dir DIR")


def test_add_client_adds_one_client_and_says_how_it_connects(tmp_path, capsys):
    folder = tmp_path / "k"
    assert main(["keys", str(folder)]) == 0
    daemon_pair = (folder / "server.key_secret").read_bytes()
    capsys.readouterr()
    assert main(["keys", "add-client", "late", "--dir", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(folder / "late.key"), str(folder / "late.key_secret"),
                           str(folder / "clients" / "late.key")]
    assert f"--client-key {folder / 'late.key_secret'}" in err
    assert (folder / "server.key_secret").read_bytes() == daemon_pair
    assert main(["keys", "add-client", "late", "--dir", str(folder)]) == 2
    one_line_error(capsys.readouterr().err, "keys", "late.key", "never overwritten")


@pytest.mark.parametrize("args", [
    ["one", "two"], ["k", "--dir", "k"], ["add-client", "a", "--dir", "k", "--client", "b"], ["add-client", "a", "b"]])
def test_words_that_fit_neither_form_are_a_usage_error(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", *args]) == 2
    one_line_error(capsys.readouterr().err, "keys", "usage: instrumentd keys")
    assert list(tmp_path.iterdir()) == []  # nothing written
