"""``python -m bench``: the benchmark command (see bench/README.md)."""

from bench.run import main

raise SystemExit(main())
