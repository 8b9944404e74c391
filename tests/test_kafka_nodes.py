"""How infra/kafka.py lays out its nodes, without starting any: addresses, replication, each node's config."""
from __future__ import annotations

from pathlib import Path

import pytest

from pushpipe.config import Settings
from pushpipe.infra.kafka import Kafka, min_insync, nodes, replication


def test_three_brokers_follow_the_first_address_two_ports_apart() -> None:
    three = Settings(kafka_bootstrap="10.0.0.5:9092", kafka_brokers=3)
    assert three.kafka_bootstrap == "10.0.0.5:9092,10.0.0.5:9094,10.0.0.5:9096"
    assert [(n.node_id, n.port, n.controller_port, n.process_name) for n in nodes(three)] == [
        (1, 9092, 9093, "kafka"), (2, 9094, 9095, "kafka-2"), (3, 9096, 9097, "kafka-3")]
    assert (replication(three), min_insync(three)) == (3, 2)
    assert (replication(Settings()), min_insync(Settings())) == (1, 1)
    assert Settings(kafka_bootstrap="a:1,b:2").kafka_brokers == 2
    with pytest.raises(ValueError, match="lists 2 brokers, PUSHPIPE_KAFKA_BROKERS says 3"):
        Settings(kafka_bootstrap="a:1,b:2", kafka_brokers=3)


def test_each_node_is_a_broker_and_a_voter_of_one_quorum(tmp_path: Path) -> None:
    three = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:29092", kafka_brokers=3)
    props = dict(line.split("=", 1) for line in Kafka()._write_config(three, nodes(three)[1]).read_text().splitlines())
    assert props["node.id"] == "2" and props["listeners"] == "PLAINTEXT://127.0.0.1:29094,CONTROLLER://127.0.0.1:29095"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    assert (props["default.replication.factor"], props["min.insync.replicas"], props["offsets.topic.replication.factor"]) == ("3", "2", "3")
    assert props["log.dirs"] == str(tmp_path / "run" / "kafka-2" / "data")


def test_data_formatted_for_one_broker_is_refused_for_three(tmp_path: Path) -> None:
    one = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:29892")
    kafka = Kafka()
    kafka._cluster_id(one)
    with pytest.raises(RuntimeError, match="formatted for the controllers 1@127.0.0.1:29893"):
        kafka._cluster_id(Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:29892", kafka_brokers=3))

