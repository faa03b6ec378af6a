"""The benchmarks that write ``docs/results/``: one folder each, on one small harness.

Run one from a clone of the repository (they are not part of the installed package, and the
library never imports them)::

    python -m benchmarks movielens            # every method of the paper, 5 seeds
    python -m benchmarks movielens --quick --out /tmp/smoke
    python -m benchmarks text --report-only   # rewrite the page from docs/results/text.json

See :mod:`benchmarks.harness` for what every benchmark shares.
"""
