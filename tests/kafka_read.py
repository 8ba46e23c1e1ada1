#!/usr/bin/env python3
"""Independent Kafka reader for the integration tests: kafka-python and cramjam, nothing of
promrelay's. Reads every message of a topic from the beginning, decompresses the payload with
raw (block-format) snappy, as the product documents' Java consumer does with Snappy.uncompress,
parses the JSON array, and prints one line per sample:

    {"partition": 0, "key": "series-group-1", "sample": {...}, "float": "675.0"}

where "float" is repr(float(sample["value"])), proving Python reads the value string.
Stops once --want samples were printed or after --timeout seconds.
"""
import argparse
import json
import sys
import time

import cramjam
from kafka import KafkaConsumer, TopicPartition


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--want", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()

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
            raw = bytes(cramjam.snappy.decompress_raw(msg.value))
            for sample in json.loads(raw):
                print(json.dumps({
                    "partition": msg.partition,
                    "key": msg.key.decode() if msg.key is not None else None,
                    "sample": sample,
                    "float": repr(float(sample["value"])),
                }), flush=True)
                printed += 1
            if printed >= args.want:
                break
    consumer.close()
    if printed < args.want:
        sys.exit(f"read {printed} samples, wanted {args.want}")


if __name__ == "__main__":
    main()
