"""The project's errors: one base a user's mistake is caught by, parameter errors still ValueErrors."""

import pytest

from instrumentd.pipeline.errors import AudioError, InstrumentdError, ParameterError


@pytest.mark.parametrize("error", [ParameterError, AudioError])
def test_every_error_is_an_instrumentd_error(error):
    with pytest.raises(InstrumentdError, match="bad value 7"):
        raise error("bad value 7")


def test_a_parameter_error_is_a_value_error_and_an_audio_error_is_not():
    assert issubclass(ParameterError, ValueError)
    assert not issubclass(AudioError, ValueError)
