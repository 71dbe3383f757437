"""The 11 classes: IRMAS folder names in DESIGN.md's order, each with its English name."""

from instrumentd.model.classes import CLASSES, NAMES


def test_the_classes_are_designs_in_order():
    assert CLASSES == ("cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi")


def test_every_class_has_a_name_and_nothing_else_does():
    assert tuple(NAMES) == CLASSES
    assert NAMES["gac"] == "Acoustic guitar" and NAMES["voi"] == "Voice"
    assert len(set(NAMES.values())) == 11
