package io.adstream.bench;

import java.io.File;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.WindowedSerdes;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The campaign-metrics benchmark's shape in Kafka Streams: impressions and clicks (Confluent-framed Avro, keyed by
 * campaign id) merged, then per campaign an hourly and a daily tumbling window counting events and summing
 * {@code cost_micros}, both written to output topics; exactly_once_v2, one stream thread, 1 s commits, 10 minutes of
 * grace. Days are UTC days here (the adstream job uses each campaign's time zone, which needs the campaigns table:
 * a little more work on adstream's side).
 *
 * <p>Runs from the beginning of the inputs until every one of {@code records} input records is processed and
 * committed, then prints one JSON line: records, wall seconds (from the start of {@code main}, so start-up is
 * included, as in the adstream runs) and CPU seconds of the whole JVM (every thread: stream thread, clients, GC and
 * JIT), and exits.
 *
 * <p>Arguments: bootstrap servers, impressions topic, clicks topic, application id, output topic prefix, the
 * impression and click {@code .avsc} files, and the number of input records.
 */
public final class CampaignWindows {
    private CampaignWindows() {}

    /** Reads a Confluent wire-format value (magic byte, 4-byte schema id, Avro binary) with the writer schema. */
    static final class ConfluentAvro implements Deserializer<GenericRecord> {
        private final GenericDatumReader<GenericRecord> reader;
        private BinaryDecoder decoder;

        ConfluentAvro(Schema schema) {
            this.reader = new GenericDatumReader<>(schema);
        }

        @Override
        public GenericRecord deserialize(String topic, byte[] data) {
            if (data == null) {
                return null;
            }
            if (data.length < 5 || data[0] != 0) {
                throw new IllegalArgumentException("not Confluent wire format");
            }
            decoder = DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, decoder);
            try {
                return reader.read(null, decoder);
            } catch (IOException e) {
                throw new IllegalArgumentException("undecodable Avro", e);
            }
        }
    }

    /** Count and cost sum of a window, as 16 bytes. */
    static final class Totals {
        final long count;
        final long costMicros;

        Totals(long count, long costMicros) {
            this.count = count;
            this.costMicros = costMicros;
        }

        static final Serde<Totals> SERDE = Serdes.serdeFrom(
            (Serializer<Totals>) (topic, t) -> t == null ? null
                : ByteBuffer.allocate(16).putLong(t.count).putLong(t.costMicros).array(),
            (Deserializer<Totals>) (topic, bytes) -> {
                if (bytes == null) {
                    return null;
                }
                ByteBuffer buffer = ByteBuffer.wrap(bytes);
                return new Totals(buffer.getLong(), buffer.getLong());
            });
    }

    /** Counts processed records and remembers the highest offset processed per input partition. */
    static final class Progress implements FixedKeyProcessor<String, Long, Long> {
        static final AtomicLong PROCESSED = new AtomicLong();
        static final Map<TopicPartition, Long> NEXT_OFFSETS = new ConcurrentHashMap<>();
        private FixedKeyProcessorContext<String, Long> context;

        @Override
        public void init(FixedKeyProcessorContext<String, Long> context) {
            this.context = context;
        }

        @Override
        public void process(FixedKeyRecord<String, Long> record) {
            context.recordMetadata().ifPresent(m ->
                NEXT_OFFSETS.merge(new TopicPartition(m.topic(), m.partition()), m.offset() + 1, Math::max));
            PROCESSED.incrementAndGet();
            context.forward(record);
        }
    }

    public static void main(String[] args) throws Exception {
        long started = System.nanoTime();
        if (args.length != 8) {
            System.err.println("usage: CampaignWindows <bootstrap> <impressions> <clicks> <application id> "
                + "<output prefix> <impression.avsc> <click.avsc> <records>");
            System.exit(2);
        }
        String bootstrap = args[0];
        String impressions = args[1];
        String clicks = args[2];
        String applicationId = args[3];
        String outputs = args[4];
        Schema impressionSchema = new Schema.Parser().parse(new File(args[5]));
        Schema clickSchema = new Schema.Parser().parse(new File(args[6]));
        long records = Long.parseLong(args[7]);
        String hourly = outputs + ".hourly";
        String daily = outputs + ".daily";

        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(adminProps)) {
            List<NewTopic> topics = new ArrayList<>();
            for (String topic : new String[] {hourly, daily}) {
                topics.add(new NewTopic(topic, 4, (short) 1));
            }
            try {
                admin.createTopics(topics).all().get();
            } catch (java.util.concurrent.ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }

        Path stateDir = Files.createTempDirectory("kstreams-peer-");
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, Long> impressionCosts = builder
            .stream(impressions, Consumed.with(Serdes.String(), Serdes.serdeFrom(
                (Serializer<GenericRecord>) (t, r) -> null, new ConfluentAvro(impressionSchema))))
            .mapValues(r -> (Long) r.get("cost_micros"));
        KStream<String, Long> clickCosts = builder
            .stream(clicks, Consumed.with(Serdes.String(), Serdes.serdeFrom(
                (Serializer<GenericRecord>) (t, r) -> null, new ConfluentAvro(clickSchema))))
            .mapValues(r -> (Long) r.get("cost_micros"));
        KGroupedStream<String, Long> byCampaign = impressionCosts
            .merge(clickCosts)
            .processValues(Progress::new)
            .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()));
        Map<String, Duration> windows = new HashMap<>();
        windows.put(hourly, Duration.ofHours(1));
        windows.put(daily, Duration.ofDays(1));
        for (Map.Entry<String, Duration> window : windows.entrySet()) {
            long size = window.getValue().toMillis();
            byCampaign
                .windowedBy(TimeWindows.ofSizeAndGrace(window.getValue(), Duration.ofMinutes(10)))
                .aggregate(
                    () -> new Totals(0, 0),
                    (campaign, cost, totals) -> new Totals(totals.count + 1, totals.costMicros + cost),
                    Materialized.<String, Totals, WindowStore<Bytes, byte[]>>with(Serdes.String(), Totals.SERDE))
                .toStream()
                .to(window.getKey(), Produced.with(
                    WindowedSerdes.timeWindowedSerdeFrom(String.class, size), Totals.SERDE));
        }

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                .SHUTDOWN_APPLICATION;
        });
        streams.start();
        try (Admin admin = Admin.create(adminProps)) {
            // Done when every record is processed and the group's committed offsets cover all of them.
            while (true) {
                Thread.sleep(50);
                if (streams.state() == KafkaStreams.State.ERROR
                        || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                    throw new IllegalStateException("Kafka Streams stopped: " + streams.state());
                }
                if (Progress.PROCESSED.get() < records) {
                    continue;
                }
                Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(applicationId).partitionsToOffsetAndMetadata().get();
                boolean covered = Progress.NEXT_OFFSETS.entrySet().stream().allMatch(e -> {
                    OffsetAndMetadata c = committed.get(e.getKey());
                    return c != null && c.offset() >= e.getValue();
                });
                if (covered) {
                    break;
                }
            }
        }
        double wall = (System.nanoTime() - started) / 1e9;
        double cpu = ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
            .getProcessCpuTime() / 1e9;
        System.out.printf("{\"records\": %d, \"wall_s\": %.3f, \"cpu_s\": %.3f}%n", Progress.PROCESSED.get(), wall, cpu);
        System.out.flush();
        streams.close(Duration.ofSeconds(30));
        streams.cleanUp();
        System.exit(0);
    }
}
