"""``sfi list-status``'s engine: what the file writers are doing, from their command and status topics.

Modules: ``model`` (the snapshot types ``Worker``/``Job``/``Command``, ``Timeouts``, the facts kept), ``tracker``
(``Tracker``: decoded messages in, snapshots out; no Kafka), ``feed`` (``StatusFeed``: the topics read into a
tracker). Only the Kafka-free parts are re-exported here: ``status.feed`` loads confluent-kafka, imported by name
where a command reads topics.
"""

from .model import COMMAND_STATES, JOB_STATES, WORKER_STATES, Command, Job, Timeouts, Worker
from .tracker import Tracker

__all__ = ["COMMAND_STATES", "JOB_STATES", "WORKER_STATES", "Command", "Job", "Timeouts", "Tracker", "Worker"]
