//! Kafka's default partitioner, written once: the Java client's (and librdkafka's `murmur2_random` for keyed
//! records), so that simulations, backtests, offset pushdown in SQL and `adstream state` find a key's partition
//! without asking a broker.

/// The partition Kafka's default partitioner (and librdkafka's `murmur2_random`, which the live jobs use) gives a
/// record with key `key` in a topic of `partitions` partitions: murmur2 of the key, made positive, modulo the count.
pub fn kafka_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed 0x9747b28c.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's int length: keys are far below 2^31 bytes.
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, byte) in rest.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_partition_is_librdkafkas_murmur2_partitioner() {
        for key in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"u-42",
            b"21",
            b"foobar",
            b"a-little-bit-long-string",
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        ] {
            for partitions in [1, 2, 3, 12] {
                // SAFETY: the murmur2 partitioner reads only `key` (keylen bytes); the topic and opaques are unused.
                let reference = unsafe {
                    rdkafka::bindings::rd_kafka_msg_partitioner_murmur2(
                        std::ptr::null(),
                        key.as_ptr().cast(),
                        key.len(),
                        partitions,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(
                    kafka_partition(key, partitions),
                    reference,
                    "{key:?} % {partitions}"
                );
            }
        }
        // Kafka's own test vectors (UtilsTest.testMurmur2), for the raw hash.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }
}
