#!/usr/bin/env python3
"""Independent raw Kafka client for the Kafka source's tests: kafka-python, nothing of
promrelay's.

    kafka_raw.py produce --brokers B --topic T   < lines
        each stdin line {"partition": 0 | null, "key": HEX | null, "value": HEX | null};
        produces them in order (acks=all), one record batch each, prints the count.
    kafka_raw.py read --brokers B --topic T --want N [--timeout S]
        prints every message of the topic from the beginning, one line each:
        {"partition": 0, "offset": 3, "key": HEX | null, "value": HEX | null}
        until N were printed (exit 1 if fewer within the timeout).
"""
import argparse
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def hexed(b):
    return None if b is None else b.hex()


def produce(args):
    producer = KafkaProducer(bootstrap_servers=args.brokers.split(","), acks="all")
    n = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        key = bytes.fromhex(m["key"]) if m.get("key") is not None else None
        value = bytes.fromhex(m["value"]) if m.get("value") is not None else None
        # One message per record batch (wait for each): Tansu 0.6.0 returns nothing for a fetch
        # whose offset lies inside a record batch (a consumer resuming or restarting at offset
        # 11 of a 50-record batch then reads nothing, seen with kafka-python as well), while
        # Kafka returns the batch and the client skips to the offset. With one record per
        # batch every committed offset is a batch boundary on Tansu too.
        producer.send(args.topic, key=key, value=value, partition=m.get("partition")).get(timeout=30)
        n += 1
    producer.flush(timeout=60)
    producer.close()
    print(n)


def read(args):
    deadline = time.time() + args.timeout
    consumer = KafkaConsumer(
        bootstrap_servers=args.brokers.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
    )
    partitions = None
    while partitions is None and time.time() < deadline:
        partitions = consumer.partitions_for_topic(args.topic)
        if partitions is None:
            time.sleep(0.2)
    if partitions is None:
        sys.exit(f"topic {args.topic} not found")
    consumer.assign([TopicPartition(args.topic, p) for p in sorted(partitions)])
    consumer.seek_to_beginning()
    printed = 0
    while printed < args.want and time.time() < deadline:
        for msg in consumer:
            print(json.dumps({
                "partition": msg.partition,
                "offset": msg.offset,
                "key": hexed(msg.key),
                "value": hexed(msg.value),
            }), flush=True)
            printed += 1
            if printed >= args.want:
                break
    consumer.close()
    if printed < args.want:
        sys.exit(f"read {printed} messages, wanted {args.want}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "read"])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--want", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.mode == "produce":
        produce(args)
    else:
        read(args)


if __name__ == "__main__":
    main()
