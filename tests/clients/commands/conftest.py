"""The training commands' fixtures: the tiny IRMAS-layout corpus, its prepared features and a stem bank
(tests/training/conftest.py), shared with the command tests here."""

from ...training.conftest import TEST_FILES, TRAIN_FILES, irmas, irmas_shared, prepared, stem_bank  # noqa: F401
