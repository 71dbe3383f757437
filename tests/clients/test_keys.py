"""``instrumentd keys``: owner-only CurveZMQ certificates, never overwritten, clients added later."""

from __future__ import annotations

import stat

import pytest
import zmq
import zmq.auth

from instrumentd.clients.cli import main
from instrumentd.clients.keys import make_keys
from instrumentd.pipeline.errors import ParameterError

from ..conftest import one_line_error


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


def test_make_keys_returns_what_it_wrote_and_the_pairs_match(tmp_path):
    written = make_keys(tmp_path / "k", ["rec"])
    assert sorted(p.name for p in written) == ["rec.key", "rec.key", "rec.key_secret", "server.key",
                                               "server.key_secret"]
    assert all(p.is_file() for p in written)
    public, secret = zmq.auth.load_certificate(tmp_path / "k" / "rec.key_secret")
    assert zmq.auth.load_certificate(tmp_path / "k" / "clients" / "rec.key") == (public, None)
    assert zmq.curve_public(secret) == public


@pytest.mark.parametrize("clients, fragment", [
    (["server"], "'server'"), (["a b"], "'a b'"), (["x" * 65], "1-64"), (["rec", "rec"], "repeat")])
def test_bad_client_names_are_named_and_nothing_is_written(tmp_path, clients, fragment):
    with pytest.raises(ParameterError, match=fragment):
        make_keys(tmp_path / "k", clients)
    assert not (tmp_path / "k").exists()


def test_the_command_prints_the_files_and_how_to_use_them(tmp_path, capsys):
    assert main(["keys", str(tmp_path / "k")]) == 0
    out, err = capsys.readouterr()
    assert sorted(out.split()) == sorted(str(tmp_path / "k" / n) for n in
                                         ("server.key", "server.key_secret", "client.key", "client.key_secret",
                                          "clients/client.key"))
    assert f"--curve-key {tmp_path / 'k' / 'server.key_secret'}" in err and "--client-key" in err
    assert main(["keys", "add-client", "x"]) == 2
    one_line_error(capsys.readouterr().err, "keys", "usage: instrumentd keys add-client NAME --dir DIR")
