"""The demo: what seerrperf's patterns buy, measured on a real server.

Not part of the installed package; run it from a checkout with ``make demo``
(or ``cd examples && python -m demo``). The modules:

- ``run.py``: the demo's three sections and :func:`~demo.run.run_demo`;
- ``builds.py``: the example app's naive and seerrperf builds under load;
- ``load.py``: the load driver (scripted users and bursts over HTTP);
- ``workload.py``: the pool-comparison workload, shared with ``benchmarks/bench_pool.py``;
- ``report.py``: the tables, "seed claim vs measured" among them;
- ``__main__.py``: the command line.
"""
