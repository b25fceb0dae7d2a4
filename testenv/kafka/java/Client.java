// Client is the Java driver of testenv/kafka: the official Apache Kafka client (kafka-clients) run as a
// subprocess, producing or consuming with the options a test names on the command line, and printing one JSON
// line per record to stdout (logs go to stderr). testenv/kafka compiles it with javac against the jars
// `make tools` installs (.tools/kafka-clients-<version>/libs) and runs it through RunJava; python/client.py is the
// same program on librdkafka and takes the same arguments.
//
//   Client produce --bootstrap HOST:PORT --topic T [--count N] [--key PREFIX] [--value PREFIX]
//                  [--header NAME=VALUE]... [--compression none|gzip|snappy|lz4|zstd] [--idempotence true|false]
//                  [--transactional-id ID] [--linger-ms N] [--batch-size N] [--acks all|1|0] [--partition P]
//                  [--value-size N] [--property KEY=VALUE]... [--timeout-ms N] [--summary true]
//   Client consume --bootstrap HOST:PORT --topic T --group G [--count N] [--group-protocol classic|consumer]
//                  [--isolation read_committed|read_uncommitted] [--property KEY=VALUE]... [--timeout-ms N]
//                  [--summary true]
//
// produce sends N records (key PREFIX-i, value PREFIX-i; no --key: null keys), each with every --header, in one
// transaction when --transactional-id is given, and prints {"partition","offset","key"} per acknowledged record.
// consume reads from the earliest offset (or the group's committed one) until N records have arrived, prints
// {"topic","partition","offset","key","value","headers":[{"key","value"}]} for each of those N, commits the
// offsets after them synchronously and exits; it exits 1 when fewer arrive within --timeout-ms.
// --value-size pads each value with '.' to N bytes. --summary true prints, instead of a line per record, one line
// {"summary":{"records","bytes","seconds"}}: the records and their key and value bytes, and the seconds from the
// first send (or the first record received) to the last acknowledgement (or record), which leaves the JVM's start out of a throughput.
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class Client {
    private Client() {}

    /** Parsed command line: single-valued options, and the repeatable --header and --property. */
    private static final class Args {
        final Map<String, String> opts = new LinkedHashMap<>();
        final List<String[]> headers = new ArrayList<>();
        final Properties props = new Properties();

        String get(String name, String def) { return opts.getOrDefault(name, def); }

        String need(String name) {
            String v = opts.get(name);
            if (v == null) throw new IllegalArgumentException("--" + name + " is required");
            return v;
        }

        int num(String name, int def) { return Integer.parseInt(get(name, Integer.toString(def))); }
    }

    private static String[] pair(String flag, String s) {
        int i = s.indexOf('=');
        if (i <= 0) throw new IllegalArgumentException(flag + " wants NAME=VALUE, got " + s);
        return new String[] {s.substring(0, i), s.substring(i + 1)};
    }

    private static Args parse(String[] argv, int from) {
        Args a = new Args();
        for (int i = from; i < argv.length; i++) {
            String f = argv[i];
            if (!f.startsWith("--") || i + 1 >= argv.length) throw new IllegalArgumentException("bad argument " + f);
            String v = argv[++i];
            switch (f) {
                case "--header": a.headers.add(pair(f, v)); break;
                case "--property": { String[] p = pair(f, v); a.props.setProperty(p[0], p[1]); break; }
                default: a.opts.put(f.substring(2), v);
            }
        }
        return a;
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length < 1) {
            System.err.println("usage: Client produce|consume --bootstrap HOST:PORT --topic T ...");
            System.exit(2);
        }
        Args a;
        try {
            a = parse(argv, 1);
        } catch (IllegalArgumentException e) {
            System.err.println("client: " + e.getMessage());
            System.exit(2);
            return;
        }
        int rc;
        switch (argv[0]) {
            case "produce": rc = produce(a); break;
            case "consume": rc = consume(a); break;
            default:
                System.err.println("client: unknown mode " + argv[0]);
                rc = 2;
        }
        System.out.flush();
        System.exit(rc);
    }

    private static byte[] bytes(String s) { return s == null ? null : s.getBytes(StandardCharsets.UTF_8); }

    private static String str(byte[] b) { return b == null ? null : new String(b, StandardCharsets.UTF_8); }

    private static int produce(Args a) throws Exception {
        Properties p = new Properties();
        p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.need("bootstrap"));
        p.setProperty(ProducerConfig.CLIENT_ID_CONFIG, a.get("client-id", "meshtrace-java-producer"));
        p.setProperty(ProducerConfig.COMPRESSION_TYPE_CONFIG, a.get("compression", "none"));
        p.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, a.get("idempotence", "true"));
        p.setProperty(ProducerConfig.LINGER_MS_CONFIG, a.get("linger-ms", "5"));
        p.setProperty(ProducerConfig.BATCH_SIZE_CONFIG, a.get("batch-size", "16384"));
        p.setProperty(ProducerConfig.ACKS_CONFIG, a.get("acks", "all"));
        int timeout = a.num("timeout-ms", 30000);
        p.setProperty(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Integer.toString(timeout));
        p.setProperty(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, Integer.toString(Math.min(timeout, 15000)));
        p.setProperty(ProducerConfig.MAX_BLOCK_MS_CONFIG, Integer.toString(timeout));
        String txn = a.get("transactional-id", null);
        if (txn != null) p.setProperty(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txn);
        p.putAll(a.props);

        String topic = a.need("topic");
        int count = a.num("count", 1);
        int partition = a.num("partition", -1);
        String keyPrefix = a.get("key", null);
        String valuePrefix = a.get("value", "value");
        int valueSize = a.num("value-size", 0);
        boolean summary = Boolean.parseBoolean(a.get("summary", "false"));
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        List<String> keys = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            if (txn != null) {
                producer.initTransactions();
                producer.beginTransaction();
            }
            long begin = System.nanoTime(), size = 0;
            for (int i = 0; i < count; i++) {
                String key = keyPrefix == null ? null : keyPrefix + "-" + i;
                byte[] value = pad(valuePrefix + "-" + i, valueSize);
                size += value.length + (key == null ? 0 : bytes(key).length);
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, partition < 0 ? null : partition,
                        bytes(key), value);
                for (String[] h : a.headers) r.headers().add(h[0], bytes(h[1]));
                acks.add(producer.send(r));
                keys.add(key);
            }
            if (txn != null) producer.commitTransaction();
            producer.flush();
            for (Future<RecordMetadata> f : acks) f.get(); // throws for a record not delivered
            if (summary) {
                printSummary(count, size, begin);
                return 0;
            }
            for (int i = 0; i < acks.size(); i++) {
                RecordMetadata m = acks.get(i).get();
                System.out.println("{\"partition\":" + m.partition() + ",\"offset\":" + m.offset()
                        + ",\"key\":" + json(keys.get(i)) + "}");
            }
        }
        return 0;
    }

    private static int consume(Args a) {
        Properties p = new Properties();
        p.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.need("bootstrap"));
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, a.get("client-id", "meshtrace-java-consumer"));
        p.setProperty(ConsumerConfig.GROUP_ID_CONFIG, a.need("group"));
        p.setProperty(ConsumerConfig.GROUP_PROTOCOL_CONFIG, a.get("group-protocol", "classic"));
        p.setProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.ISOLATION_LEVEL_CONFIG, a.get("isolation", "read_committed"));
        p.putAll(a.props);

        String topic = a.need("topic");
        int count = a.num("count", 1);
        long deadline = System.currentTimeMillis() + a.num("timeout-ms", 30000);
        boolean summary = Boolean.parseBoolean(a.get("summary", "false"));
        int got = 0;
        long begin = System.nanoTime(), size = 0;
        Map<TopicPartition, OffsetAndMetadata> done = new LinkedHashMap<>(); // the next offset per partition printed
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(Collections.singletonList(topic));
            while (got < count && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    if (got >= count) break;
                    if (got == 0) begin = System.nanoTime();
                    got++;
                    done.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    if (summary) {
                        size += (r.key() == null ? 0 : r.key().length) + (r.value() == null ? 0 : r.value().length);
                        continue;
                    }
                    StringBuilder hs = new StringBuilder("[");
                    for (Header h : r.headers()) {
                        if (hs.length() > 1) hs.append(',');
                        hs.append("{\"key\":").append(json(h.key())).append(",\"value\":")
                                .append(json(str(h.value()))).append('}');
                    }
                    hs.append(']');
                    System.out.println("{\"topic\":" + json(r.topic()) + ",\"partition\":" + r.partition()
                            + ",\"offset\":" + r.offset() + ",\"key\":" + json(str(r.key())) + ",\"value\":"
                            + json(str(r.value())) + ",\"headers\":" + hs + "}");
                }
            }
            if (summary && got == count) printSummary(got, size, begin);
            if (!done.isEmpty()) consumer.commitSync(done, Duration.ofSeconds(15));
        }
        if (got < count) {
            System.err.println("client: consumed " + got + " of " + count + " records before the timeout");
            return 1;
        }
        return 0;
    }

    /** pad returns s in UTF-8, padded with '.' to size bytes when it is shorter. */
    private static byte[] pad(String s, int size) {
        byte[] b = bytes(s);
        if (b.length >= size) return b;
        byte[] out = new byte[size];
        System.arraycopy(b, 0, out, 0, b.length);
        java.util.Arrays.fill(out, b.length, size, (byte) '.');
        return out;
    }

    /** printSummary prints the --summary line: records, their key and value bytes, seconds since begin. */
    private static void printSummary(long records, long size, long begin) {
        double seconds = (System.nanoTime() - begin) / 1e9;
        System.out.println("{\"summary\":{\"records\":" + records + ",\"bytes\":" + size + ",\"seconds\":" + seconds + "}}");
    }

    /** json quotes s as a JSON string (null as null). */
    private static String json(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
