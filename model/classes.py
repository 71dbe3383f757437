"""The 11 IRMAS instrument classes, in the order of the network's outputs, and the network variants' names."""

CLASSES = ("cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi")
NAMES = {
    "cel": "Cello",
    "cla": "Clarinet",
    "flu": "Flute",
    "gac": "Acoustic guitar",
    "gel": "Electric guitar",
    "org": "Organ",
    "pia": "Piano",
    "sax": "Saxophone",
    "tru": "Trumpet",
    "vio": "Violin",
    "voi": "Voice",
}

# the paper's network and its ablations (model/networks.py builds them); named here, where the
# command line can read them without loading torch
VARIANT_NAMES = ("cross", "mel", "mask", "concat", "han")
