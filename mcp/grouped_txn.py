"""A Kafka transaction whose records come in groups: Kafka refusing one group fails no other.

A group is the records of one request (the API's group commit) or of one task's outcome (a
worker): committed together or not at all. Kafka refuses records one at a time (larger than a
size limit, a topic the credentials may not write), but a refused record dooms the whole
transaction. So a transaction that fails with refused records is aborted and done again without
them:

- a record the client library refuses at once (`produce` raises) never enters the transaction;
- the broker refuses a partition's whole batch, so an innocent group can be caught with a guilty
  one: the groups it blamed are suspects, and in the next round each suspect is produced alone
  (flushed apart from the others). A group refused alone is guilty.

Every round convicts a group, or narrows the suspects, or commits. A failure without a refused
record (the broker away, a timeout, a fenced producer) reaches the caller unchanged: that is an
outage, not one request's fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from mcp.kafka import kafka_error
from mcp.records import Record, is_record_error

log = logging.getLogger(__name__)

MAX_ROUNDS = 16


@dataclass(frozen=True)
class Group:
    id: Hashable
    records: Sequence[Record]


@dataclass(frozen=True)
class Refusal:
    error: KafkaError
    topic: str


# What takes a refused group's place (an empty group: nothing); None: the group may not be
# dropped, and the whole transaction fails instead.
Substitute = Callable[[Group, Refusal], Group | None]


class _RoundLost(Exception):
    """An earlier record of this round failed: the transaction must be aborted."""


class GroupedTransaction:
    def __init__(
        self, producer: Producer, timeout: float, substitute: Substitute | None = None
    ) -> None:
        self.producer = producer
        self.timeout = timeout
        self.substitute = substitute
        self.groups: list[Group] = []
        self.refused: dict[Hashable, Refusal] = {}
        self._failed: dict[Hashable, Refusal] = {}  # delivery errors of this round
        self._alone: set[Hashable] = set()
        self._tainted = False  # a refused group's first records are in this round

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.groups = []
        self.refused = {}
        self._new_round()

    def _new_round(self) -> None:
        self._failed = {}
        self._alone = set()
        self._tainted = False

    def add(self, group: Group) -> Refusal | None:
        """Produce a group into the open transaction; Kafka's immediate refusal is returned."""
        try:
            refusal = self._produce(group)
        except _RoundLost:  # an earlier record failed: this round will be done again
            self.groups.append(group)
            self._tainted = True
            return None
        if refusal is None:
            self.groups.append(group)
            return None
        replacement = self._replace(group, refusal)
        if replacement is not None and replacement.records:
            self.add(replacement)
        return refusal

    def commit(self, finish: Callable[[], None]) -> dict[Hashable, Refusal]:
        """Commit through `finish` (commit_transaction, after send_offsets for a worker), leaving
        out the groups Kafka refused; those are returned."""
        suspects: set[Hashable] = set()
        for _ in range(MAX_ROUNDS):
            if not self._tainted:
                try:
                    finish()
                    return self.refused
                except KafkaException as exc:
                    err = kafka_error(exc)
                    if err is None or not err.txn_requires_abort() or err.fatal():
                        raise
                    self.producer.poll(0)  # the reports of the records that failed it
                    if not any(is_record_error(r.error) for r in self._failed.values()):
                        raise
            else:
                self.producer.poll(0)
            self.producer.abort_transaction(self.timeout)
            self._convict(suspects)
            self._redo(suspects)
        raise KafkaException(KafkaError(KafkaError._FAIL, "too many refused records"))

    def _convict(self, suspects: set[Hashable]) -> None:
        for group_id, refusal in self._failed.items():
            if not is_record_error(refusal.error):
                continue
            if group_id in self._alone:
                suspects.discard(group_id)
                index = next(i for i, g in enumerate(self.groups) if g.id == group_id)
                group = self.groups.pop(index)
                log.warning("Kafka refused %s: %s", group_id, refusal.error)
                replacement = self._replace(group, refusal)
                if replacement is not None:
                    self.groups.insert(index, replacement)
            else:
                suspects.add(group_id)

    def _replace(self, group: Group, refusal: Refusal) -> Group | None:
        self.refused[group.id] = refusal
        if self.substitute is None:
            return None
        replacement = self.substitute(group, refusal)
        if replacement is None:
            raise KafkaException(refusal.error)
        return replacement

    def _redo(self, suspects: set[Hashable]) -> None:
        """Produce the kept groups again in a new transaction, each suspect on its own."""
        self.producer.begin_transaction()
        self._new_round()
        groups, self.groups = self.groups, []
        for i, group in enumerate(groups):
            alone = group.id in suspects
            try:
                if alone:
                    self._flush()
                    self._alone.add(group.id)
                refusal = self._produce(group)
                if refusal is not None:
                    self._failed[group.id] = refusal
                    self._alone.add(group.id)
                elif alone:
                    self._flush()
            except _RoundLost:
                pass
            if self._failed:  # this round is lost: convict, then go again
                self._tainted = True
                self.groups += groups[i:]
                return
            self.groups.append(group)

    def _flush(self) -> None:
        if self.producer.flush(self.timeout):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "records not delivered"))
        if self._failed:
            raise _RoundLost

    def _produce(self, group: Group) -> Refusal | None:
        report = partial(self._report, group.id)
        for i, r in enumerate(group.records):
            try:
                self.producer.produce(
                    r.topic,
                    r.value,
                    r.key,
                    partition=r.partition,
                    headers=list(r.headers),
                    on_delivery=report,
                )
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.code() == KafkaError._STATE:
                    raise _RoundLost from exc
                if err is None or not is_record_error(err):
                    raise
                self._tainted = self._tainted or i > 0
                return Refusal(err, r.topic)
        return None

    def _report(self, group_id: Hashable, err: KafkaError | None, msg: Message) -> None:
        if err is not None and group_id not in self._failed:
            self._failed[group_id] = Refusal(err, msg.topic() or "")
