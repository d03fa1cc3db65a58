"""The two daemons, ``sfi listen`` and ``sfi watch``, and everything they share.

``listen`` (consume a writer's channels, correlate pl72 and wrdn, ingest through workers, commit in
order) and ``watch`` (settled files of watched folders) both record every outcome in ``state`` (SQLite)
before anything is committed, through ``record``. ``runtime`` builds what both stand on (state store, sink,
ingestor, ops server, signals) from one ``Config``. ``procpool`` runs the ingest core in worker processes,
fenced by a lease; the listener's ``_partitions`` keeps its per-partition bookkeeping (``_offsets``: which
offset may be committed) and ``_filework`` its files in flight; ``_pause.StatePause`` is what the
listener does while the state store refuses writes; ``health``, ``metrics`` and ``ops_http`` serve operators;
``_supervise`` restarts a listener that librdkafka crashed. Nothing is imported here: ``sfi --help`` and
``sfi failures`` import only what they use.
"""
