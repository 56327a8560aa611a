"""Run every benchmark (``python -m benchmarks``) or some (``python -m benchmarks registration deploy``).

Each ``benchmarks/bench_*.py`` has an async ``main()`` that prints its
figures; this runner only sequences them.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys

import benchmarks


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    wanted = [n for n in names if not argv or any(a in n for a in argv)]
    if not wanted:
        print(f"no benchmark matches {argv}; have: {', '.join(names)}")
        return 2
    for name in wanted:
        print(f"=== {name}")
        module = importlib.import_module(f"benchmarks.{name}")
        result = module.main()
        if inspect.iscoroutine(result):
            asyncio.run(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
