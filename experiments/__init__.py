"""One-off experiments and measurements around ssl_learn (not part of the installed package).

Each module runs from the repository root as `python -m experiments.NAME ...`; see experiments/README.md.
"""
