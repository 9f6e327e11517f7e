"""Hostile input for every reader and command of compat: valid seeds, mutations of them and inputs from scratch
(``strategies``), the reader or command each lands on (``surfaces``), and one judge of the outcome (``outcome``).
``tests/test_hostile.py`` runs a short profile; ``benchmarks/fuzz.py`` runs as many cases as it is asked."""
