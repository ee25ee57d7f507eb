//! Fuzz target `wire_decode`: arbitrary bytes as a Confluent-framed Avro value (read as an AdClick and as an
//! AdImpression, writer schemas known offline under ids 1 and 2) and as Kafka record headers.
//!
//! Shared by the afl binary (`fuzz/fuzz_targets/wire_decode.rs`) and the corpus replay (`tests/fuzz_corpus.rs`).

use std::cell::RefCell;

use adstream_processors::runtime::headers::{self, RawHeader};
use adstream_processors::runtime::{SchemaCache, TypedDecoder};
use adstream_schemas::events::{avsc, AdClick, AdImpression};

/// Schema id under which the AdClick writer schema is known.
pub const CLICK_ID: u32 = 1;
/// Schema id under which the AdImpression writer schema is known.
pub const IMPRESSION_ID: u32 = 2;

struct Decoders {
    cache: SchemaCache,
    click: TypedDecoder,
    impression: TypedDecoder,
}

impl Decoders {
    fn new() -> Decoders {
        let mut cache = SchemaCache::offline();
        cache
            .insert(CLICK_ID, avsc::AD_CLICK)
            .expect("AdClick schema");
        cache
            .insert(IMPRESSION_ID, avsc::AD_IMPRESSION)
            .expect("AdImpression schema");
        Decoders {
            cache,
            click: TypedDecoder::new("io.adstream.ads.AdClick", avsc::AD_CLICK).expect("AdClick"),
            impression: TypedDecoder::new("io.adstream.ads.AdImpression", avsc::AD_IMPRESSION)
                .expect("AdImpression"),
        }
    }
}

thread_local! {
    // Built once: the cache and decoders leak their parsed schemas by design (few, process-long).
    static DECODERS: RefCell<Decoders> = RefCell::new(Decoders::new());
}

/// Decodes `data` as a wire value with both decoders and checks the headers carved from it; errors are fine,
/// panics are not.
pub fn run(data: &[u8]) {
    DECODERS.with_borrow_mut(|decoders| {
        let Decoders {
            cache,
            click,
            impression,
        } = decoders;
        let _ = click.decode::<AdClick>(cache, Some(data));
        let _ = impression.decode::<AdImpression>(cache, Some(data));
    });
    let _ = headers::check(carve_headers(data));
}

/// Headers from bytes: repeatedly a key length byte and the key, then a value length byte (0xff: null value) and
/// the value; lengths past the end take what is left.
fn carve_headers(mut data: &[u8]) -> Vec<RawHeader<'_>> {
    let mut out = Vec::new();
    while let Some((&key_len, rest)) = data.split_first() {
        let (key, rest) = rest.split_at(usize::from(key_len).min(rest.len()));
        let (value, rest) = match rest.split_first() {
            None => (None, rest),
            Some((&0xff, rest)) => (None, rest),
            Some((&value_len, rest)) => {
                let (value, rest) = rest.split_at(usize::from(value_len).min(rest.len()));
                (Some(value), rest)
            }
        };
        out.push((key, value));
        data = rest;
    }
    out
}
