"""instrumentd: real-time predominant-instrument recognition (Reghunath et al., Technologies 2026)."""

__version__ = "0.1.0"
