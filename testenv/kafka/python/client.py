"""The librdkafka driver of testenv/kafka: confluent-kafka (librdkafka bundled) run as a subprocess.

Same modes, arguments and output as java/Client.java (see there): one JSON line per record on stdout, logs on
stderr. testenv/kafka runs it through RunPython with the confluent-kafka that `make tools` installs with
pip --target under .tools on PYTHONPATH.

  client.py produce --bootstrap HOST:PORT --topic T [--count N] [--key PREFIX] [--value PREFIX]
                    [--header NAME=VALUE]... [--compression none|gzip|snappy|lz4|zstd] [--idempotence true|false]
                    [--transactional-id ID] [--linger-ms N] [--batch-size N] [--acks all|1|0] [--partition P]
                    [--value-size N] [--property KEY=VALUE]... [--timeout-ms N] [--summary true]
  client.py consume --bootstrap HOST:PORT --topic T --group G [--count N] [--group-protocol classic|consumer]
                    [--isolation read_committed|read_uncommitted] [--property KEY=VALUE]... [--timeout-ms N]
                    [--summary true]
"""

import argparse
import json
import sys
import time

import confluent_kafka


def pair(s):
    name, sep, value = s.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("want NAME=VALUE, got " + s)
    return name, value


def parse(argv):
    p = argparse.ArgumentParser(prog="client.py")
    p.add_argument("mode", choices=["produce", "consume"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--client-id")
    p.add_argument("--key")
    p.add_argument("--value", default="value")
    p.add_argument("--value-size", type=int, default=0)
    p.add_argument("--summary", default="false", choices=["true", "false"])
    p.add_argument("--header", type=pair, action="append", default=[])
    p.add_argument("--compression", default="none")
    p.add_argument("--idempotence", default="true", choices=["true", "false"])
    p.add_argument("--transactional-id")
    p.add_argument("--linger-ms", default="5")
    p.add_argument("--batch-size", default="16384")
    p.add_argument("--acks", default="all")
    p.add_argument("--partition", type=int, default=-1)
    p.add_argument("--group")
    p.add_argument("--group-protocol", default="classic", choices=["classic", "consumer"])
    p.add_argument("--isolation", default="read_committed")
    p.add_argument("--property", type=pair, action="append", default=[])
    p.add_argument("--timeout-ms", type=int, default=30000)
    return p.parse_args(argv)


def text(b):
    return None if b is None else b.decode("utf-8", "replace")


def pad(s, size):
    b = s.encode("utf-8")
    return b + b"." * (size - len(b)) if len(b) < size else b


def print_summary(records, size, begin):
    seconds = time.monotonic() - begin
    print(json.dumps({"summary": {"records": records, "bytes": size, "seconds": seconds}}))


def log_error(err):
    print("client: librdkafka error:", err, file=sys.stderr)


def produce(a):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "client.id": a.client_id or "meshtrace-librdkafka-producer",
        "compression.type": a.compression,
        "enable.idempotence": a.idempotence,
        "linger.ms": a.linger_ms,
        "batch.size": a.batch_size,
        "acks": a.acks,
        "message.timeout.ms": a.timeout_ms,
        "error_cb": log_error,
    }
    if a.transactional_id:
        conf["transactional.id"] = a.transactional_id
    conf.update(dict(a.property))
    producer = confluent_kafka.Producer(conf)
    timeout = a.timeout_ms / 1000
    if a.transactional_id:
        producer.init_transactions(timeout)
        producer.begin_transaction()
    acks = [None] * a.count
    failed = []

    def delivered(i):
        def cb(err, msg):
            if err is not None:
                failed.append(err)
            else:
                acks[i] = msg

        return cb

    keys = []
    begin, size = time.monotonic(), 0
    for i in range(a.count):
        key = None if a.key is None else "%s-%d" % (a.key, i)
        keys.append(key)
        value = pad("%s-%d" % (a.value, i), a.value_size)
        size += len(value) + (0 if key is None else len(key.encode("utf-8")))
        kw = {"value": value, "headers": list(a.header), "on_delivery": delivered(i)}
        if key is not None:
            kw["key"] = key
        if a.partition >= 0:
            kw["partition"] = a.partition
        while True:
            try:
                producer.produce(a.topic, **kw)
                break
            except BufferError:
                producer.poll(0.1)
    if a.transactional_id:
        producer.commit_transaction(timeout)
    left = producer.flush(timeout)
    if left or failed or any(m is None for m in acks):
        print("client: %d records undelivered, errors: %s" % (left or acks.count(None), failed), file=sys.stderr)
        return 1
    if a.summary == "true":
        print_summary(a.count, size, begin)
        return 0
    for key, m in zip(keys, acks):
        print(json.dumps({"partition": m.partition(), "offset": m.offset(), "key": key}))
    return 0


def consume(a):
    if not a.group:
        print("client: --group is required", file=sys.stderr)
        return 2
    conf = {
        "bootstrap.servers": a.bootstrap,
        "client.id": a.client_id or "meshtrace-librdkafka-consumer",
        "group.id": a.group,
        "group.protocol": a.group_protocol,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": a.isolation,
        "error_cb": log_error,
    }
    conf.update(dict(a.property))
    consumer = confluent_kafka.Consumer(conf)
    consumer.subscribe([a.topic])
    deadline = time.monotonic() + a.timeout_ms / 1000
    got = 0
    begin, size = time.monotonic(), 0
    try:
        while got < a.count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    continue
                print("client: consume error:", msg.error(), file=sys.stderr)
                continue
            if got == 0:
                begin = time.monotonic()
            got += 1
            if a.summary == "true":
                size += len(msg.key() or b"") + len(msg.value() or b"")
                continue
            headers = [{"key": k, "value": text(v)} for k, v in (msg.headers() or [])]
            print(json.dumps({
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": text(msg.key()),
                "value": text(msg.value()),
                "headers": headers,
            }))
        if a.summary == "true" and got == a.count:
            print_summary(got, size, begin)
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    if got < a.count:
        print("client: consumed %d of %d records before the timeout" % (got, a.count), file=sys.stderr)
        return 1
    return 0


def main(argv):
    a = parse(argv)
    rc = produce(a) if a.mode == "produce" else consume(a)
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
