#!/usr/bin/env python3
"""A service that subscribes to vaewatch's alert topic, in Python (confluent-kafka): reads alert
and data-quality events, drops the repeats that at-least-once delivery may bring, and prints one
line per event, the same lines as alert_subscriber.rs.

    pip install confluent-kafka
    python3 alert_subscriber.py --brokers localhost:9092 --topic vaewatch.alerts

Offsets are committed after each event is handled, so a restart goes on where it stopped.
"""
import argparse
import json
import sys

from confluent_kafka import Consumer


def describe(kind, payload):
    """One printed line per event, and the key that tells a repeat of the same event."""
    event = json.loads(payload)
    if kind == "alert":
        top = ",".join(f"{c['channel']}:{c['share']:.2f}" for c in event["top_channels"])
        key = f"{event['alert_id']}/{event['state']}/{event['event_time']}"
        line = (
            f"alert {event['event_time']} {event['equipment_id']} {event['state']} "
            f"{event['severity']} ratio={event['score_ratio']:.2f} top={top}"
        )
        return key, line
    if kind == "data_quality":
        key = f"{event['quality_id']}/{event['state']}/{event['event_time']}"
        line = (
            f"data_quality {event['event_time']} {event['equipment_id']} {event['channel']} "
            f"{event['condition']} {event['state']}"
        )
        return key, line
    raise ValueError(f"unknown event kind {kind!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", default="vaewatch.alerts")
    parser.add_argument("--group", default="alert-printer")
    parser.add_argument("--max", type=int, help="stop after this many distinct events")
    args = parser.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    seen = set()
    try:
        while args.max is None or len(seen) < args.max:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                print(f"kafka: {message.error()}", file=sys.stderr)
                continue
            headers = dict(message.headers() or [])
            kind = (headers.get("vaewatch-event") or b"").decode()
            try:
                key, line = describe(kind, message.value())
            except (ValueError, KeyError) as e:
                print(f"skipped a message at offset {message.offset()}: {e}", file=sys.stderr)
            else:
                if key not in seen:
                    seen.add(key)
                    print(line, flush=True)
            consumer.commit(message=message, asynchronous=True)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
