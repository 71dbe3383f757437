"""CurveZMQ certificates (:mod:`instrumentd.clients.keys`): the pairs match, bad client names write nothing."""

from __future__ import annotations

import pytest
import zmq
import zmq.auth

from instrumentd.clients.keys import make_keys
from instrumentd.pipeline.errors import ParameterError


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
