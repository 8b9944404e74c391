package pushpipe;

import java.io.IOException;
import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.util.Collector;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;  // shaded in the sql connector

/**
 * Kafka record values as raw bytes, like a value-only ByteArraySchema, except that a tombstone (a null value)
 * is not dropped: it becomes MARK + topic + NUL + key, so the Python job can delete the key on a compacted
 * topic or dead-letter it elsewhere (jobs/deadletters.py reads the marker; keep MARK the same there).
 */
public final class TombstoneMarkingSchema implements KafkaRecordDeserializationSchema<byte[]> {
    private static final long serialVersionUID = 1L;
    static final byte[] MARK = "\u00fe\u00ffpushpipe:tombstone:".getBytes(StandardCharsets.ISO_8859_1);

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<byte[]> out) throws IOException {
        if (record.value() != null) {
            out.collect(record.value());
            return;
        }
        byte[] topic = record.topic().getBytes(StandardCharsets.UTF_8);
        byte[] key = record.key() == null ? new byte[0] : record.key();
        byte[] marked = new byte[MARK.length + topic.length + 1 + key.length];
        System.arraycopy(MARK, 0, marked, 0, MARK.length);
        System.arraycopy(topic, 0, marked, MARK.length, topic.length);
        System.arraycopy(key, 0, marked, MARK.length + topic.length + 1, key.length);
        out.collect(marked);
    }

    @Override
    public TypeInformation<byte[]> getProducedType() {
        return PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
    }
}
