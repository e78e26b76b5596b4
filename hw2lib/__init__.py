"""hw2lib: the tested library behind the executable chapter."""

__version__ = "0.1.0"
