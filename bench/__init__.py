"""Side-by-side benchmarks: Angos against CNCF Distribution on the same machine.

Run ``bench/run`` (or ``python -m bench``) from the repository root; see bench/README.md.
"""
