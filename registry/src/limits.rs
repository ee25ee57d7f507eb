//! Bounds that keep one request from exhausting the registry, each refused with a Confluent error that names the
//! limit instead of failing deep inside (a Kafka write error, a check that runs for seconds).

use std::collections::HashMap;

use apache_avro::Schema;

/// Largest request body. Larger bodies get a JSON 413 before they are read to the end. It is well above what a
/// storable schema needs (see [`MAX_RECORD_BYTES`]) so that a large schema learns the schema limit, not this one.
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A body above [`MAX_REQUEST_BYTES`] is still read to its end, and discarded, up to this size: a client answered
/// while it is still sending sees a reset connection instead of the 413. Beyond it the connection is dropped.
pub(crate) const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

/// Largest record (key and value) the registry writes to its topic. librdkafka refuses messages above its
/// `message.max.bytes` (1,000,000 by default) and brokers above about 1 MiB; a schema whose record is larger could
/// never be stored, so it is refused as invalid before anything is written, with room left for record overhead.
pub(crate) const MAX_RECORD_BYTES: usize = 900_000;

/// Highest schema id: Confluent's ids are Java `int`s, so clients read anything above as negative.
pub(crate) const MAX_SCHEMA_ID: u32 = i32::MAX as u32;

/// Largest union fan-out (see [`union_fanout`]) a schema may have. Checking compatibility compares every writer
/// branch with every reader branch at each level of nested unions (apache-avro's checker does not remember failed
/// pairs, and branches named alike in other namespaces are all compared), so the work grows with the square of the
/// fan-out. Measured on a debug build (shared 2-core machine, branches all named `R`, leaves incompatible): 64 →
/// 0.1 s, 216 → 0.7 s, 256 → 1.2 s, 625 → 7 s, 1000 → 3.5 to 23 s depending on load. 256 admits a union of a
/// couple of hundred event types and keeps the worst check around a second.
pub(crate) const MAX_UNION_FANOUT: u64 = 256;

/// The largest product of union widths along any path into the schema: `["null", A, B]` whose `A` has a field of
/// a 4-branch union has fan-out 3 × 4 = 12. A named type counts once per path, so recursive types are finite.
pub(crate) fn union_fanout(schema: &Schema) -> u64 {
    let mut walk = Fanout {
        definitions: HashMap::new(),
        done: HashMap::new(),
        on_path: Vec::new(),
    };
    walk.collect(schema);
    walk.of(schema)
}

struct Fanout<'s> {
    /// Named types by full name, to follow references.
    definitions: HashMap<String, &'s Schema>,
    /// Fan-out of named types already measured, so a type used many times is measured once.
    done: HashMap<String, u64>,
    /// Named types being measured on the current path: meeting one again is recursion and adds nothing.
    on_path: Vec<String>,
}

impl<'s> Fanout<'s> {
    fn collect(&mut self, schema: &'s Schema) {
        match schema {
            // A reference names a definition found elsewhere; it is not one.
            Schema::Ref { .. } => return,
            Schema::Record(_) | Schema::Enum(_) | Schema::Fixed(_) => {
                let name = schema.name().map(|n| n.fullname(None)).unwrap_or_default();
                if self.definitions.insert(name, schema).is_some() {
                    return;
                }
            }
            _ => {}
        }
        match schema {
            Schema::Record(record) => record.fields.iter().for_each(|f| self.collect(&f.schema)),
            Schema::Array(array) => self.collect(&array.items),
            Schema::Map(map) => self.collect(&map.types),
            Schema::Union(union) => union.variants().iter().for_each(|v| self.collect(v)),
            _ => {}
        }
    }

    fn of(&mut self, schema: &'s Schema) -> u64 {
        match schema {
            Schema::Union(union) => {
                let widest_branch = union.variants().iter().map(|v| self.of(v)).max();
                let width = u64::try_from(union.variants().len()).unwrap_or(u64::MAX);
                width.saturating_mul(widest_branch.unwrap_or(1))
            }
            Schema::Array(array) => self.of(&array.items),
            Schema::Map(map) => self.of(&map.types),
            Schema::Record(record) => {
                let name = record.name.fullname(None);
                self.named(name, |walk| {
                    record
                        .fields
                        .iter()
                        .map(|f| walk.of(&f.schema))
                        .max()
                        .unwrap_or(1)
                })
            }
            Schema::Ref { name } => match self.definitions.get(&name.fullname(None)).copied() {
                Some(definition) => self.of(definition),
                // A type defined outside the schema is measured where it is defined.
                None => 1,
            },
            _ => 1,
        }
    }

    fn named(&mut self, name: String, measure: impl FnOnce(&mut Self) -> u64) -> u64 {
        if let Some(fanout) = self.done.get(&name) {
            return *fanout;
        }
        if self.on_path.contains(&name) {
            return 1;
        }
        self.on_path.push(name.clone());
        let fanout = measure(self);
        self.on_path.pop();
        self.done.insert(name, fanout);
        fanout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout(text: &str) -> u64 {
        union_fanout(&Schema::parse_str(text).unwrap())
    }

    #[test]
    fn fanout_multiplies_nested_unions_and_stops_at_recursion() {
        assert_eq!(fanout(r#""string""#), 1);
        assert_eq!(fanout(r#"["null","string"]"#), 2);
        let nested = r#"["null",{"type":"record","name":"A","fields":[
            {"name":"x","type":["null","int","long","string"]},
            {"name":"y","type":{"type":"array","items":["int","string"]}}]}]"#;
        assert_eq!(fanout(nested), 2 * 4);
        let recursive = r#"{"type":"record","name":"Node","fields":[
            {"name":"next","type":["null","Node"]},{"name":"v","type":["int","string","long"]}]}"#;
        assert_eq!(fanout(recursive), 3);
        // A named type used twice along one path is not counted twice per use, only along the nesting.
        let reused = r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":["null",{"type":"record","name":"B","fields":[{"name":"b","type":["int","long"]}]}]},
            {"name":"c","type":["null","string","B"]}]}"#;
        assert_eq!(fanout(reused), 3 * 2);
    }
}
