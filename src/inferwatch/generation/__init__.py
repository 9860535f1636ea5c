"""Generation: every committed file that is derived from the thresholds and the code.

One room, two modules:

- :mod:`~inferwatch.generation.registry` lists the producers. A producer is a domain's pure
  function from the thresholds to ``{path: text}`` (the alert rules, runbooks and promtool
  tests; the dashboards; compose; Kubernetes; Alertmanager; the metric catalogue of
  docs/metrics.md and the README's fault-scenario table). Domains import none of their
  siblings: where one output is built from another's (the dashboards' ConfigMaps from the
  dashboards' JSON), the registry composes them.
- :mod:`~inferwatch.generation.driver` writes and checks what they produce, keeps the
  ownership manifest (``GENERATED.md`` at the root: every file it owns, and which producer
  owns it), removes the files a producer no longer makes, and writes a ``GENERATED.md`` note
  at the top of every output folder saying what generated its files.

``inferwatch generate [--check]`` (:mod:`inferwatch.cli.generate`) is the one way to run it.
"""
