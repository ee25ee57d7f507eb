//! Unit tests of the compatibility rules, the corrections to apache-avro's verdict, and the levels.

use std::collections::BTreeSet;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use super::walk::{Correction, Outcome, Walker};
use super::*;

fn parse(json: &str) -> Schema {
    Schema::parse_str(json).unwrap_or_else(|e| panic!("test schema {json} does not parse: {e}"))
}

/// Our incompatibilities when data written with `writer` is read with `reader` (empty: compatible).
fn problems(writer: &str, reader: &str) -> Vec<Incompatibility> {
    can_read(&parse(writer), &parse(reader))
        .err()
        .unwrap_or_default()
}

fn compatible(writer: &str, reader: &str) -> bool {
    can_read(&parse(writer), &parse(reader)).is_ok()
}

/// apache-avro 0.22's verdict alone, `Partial` counted as incompatible.
fn apache_avro_compatible(writer: &str, reader: &str) -> bool {
    matches!(
        SchemaCompatibility::can_read(&parse(writer), &parse(reader)),
        Ok(Compatibility::Full)
    )
}

fn corrections(writer: &str, reader: &str) -> BTreeSet<Correction> {
    let (writer, reader) = (parse(writer), parse(reader));
    Walker::check(&writer, &reader).corrections
}

fn record(name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","fields":[{fields}]}}"#)
}

fn kinds(found: &[Incompatibility]) -> Vec<IncompatibilityKind> {
    found.iter().map(|p| p.kind).collect()
}

// ----- the rules -----------------------------------------------------------------------------------------------------

#[test]
fn promotions_are_one_way_and_only_the_avro_ones() {
    let allowed = [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ];
    let types = [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ];
    for writer in types {
        for reader in types {
            let expected = writer == reader || allowed.contains(&(writer, reader));
            let (w, r) = (format!("\"{writer}\""), format!("\"{reader}\""));
            assert_eq!(
                compatible(&w, &r),
                expected,
                "writer {writer}, reader {reader}"
            );
        }
    }
    let found = problems(r#""long""#, r#""int""#);
    assert_eq!(kinds(&found), [IncompatibilityKind::TypeMismatch]);
    assert_eq!(
        found[0].message,
        "the top-level schema: reader type int cannot read writer type long"
    );
}

#[test]
fn reader_field_without_default_must_be_written() {
    let old = record("AdClick", r#"{"name":"id","type":"string"}"#);
    let with_default = record(
        "AdClick",
        r#"{"name":"id","type":"string"},{"name":"currency","type":"string","default":"USD"}"#,
    );
    let without_default = record(
        "AdClick",
        r#"{"name":"id","type":"string"},{"name":"currency","type":"string"}"#,
    );
    assert!(compatible(&old, &with_default));
    let found = problems(&old, &without_default);
    assert_eq!(
        kinds(&found),
        [IncompatibilityKind::ReaderFieldMissingDefaultValue]
    );
    assert_eq!(found[0].location, "/fields/1");
    assert_eq!(found[0].path, "AdClick.currency");
    assert_eq!(
        found[0].to_string(),
        "reader field 'currency' (AdClick.currency) has no default and is missing from the writer schema"
    );
    // Removing a field is always readable: the reader skips what it does not know.
    assert!(compatible(&without_default, &old));
}

#[test]
fn a_null_default_counts_as_a_default() {
    let old = record("R", r#"{"name":"id","type":"string"}"#);
    let new = record(
        "R",
        r#"{"name":"id","type":"string"},{"name":"note","type":["null","string"],"default":null}"#,
    );
    assert!(compatible(&old, &new));
}

#[test]
fn field_aliases_of_the_reader_find_renamed_fields_but_writer_aliases_do_not() {
    let old = record("R", r#"{"name":"cost","type":"int"}"#);
    let renamed = record(
        "R",
        r#"{"name":"cost_micros","type":"long","aliases":["cost"]}"#,
    );
    assert!(
        compatible(&old, &renamed),
        "alias plus int -> long promotion"
    );
    let old_with_alias = record(
        "R",
        r#"{"name":"cost","type":"int","aliases":["cost_micros"]}"#,
    );
    let plain = record("R", r#"{"name":"cost_micros","type":"long"}"#);
    assert_eq!(
        kinds(&problems(&old_with_alias, &plain)),
        [IncompatibilityKind::ReaderFieldMissingDefaultValue]
    );
}

#[test]
fn enum_reader_needs_every_writer_symbol_unless_it_has_a_default() {
    let ab = r#"{"type":"enum","name":"E","symbols":["A","B"]}"#;
    let abc = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
    let ab_default = r#"{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}"#;
    assert!(compatible(ab, abc));
    let found = problems(abc, ab);
    assert_eq!(kinds(&found), [IncompatibilityKind::MissingEnumSymbols]);
    assert_eq!(found[0].location, "/symbols");
    assert!(found[0].message.contains("[C]"), "{}", found[0].message);
    assert!(compatible(abc, ab_default));
}

#[test]
fn unions_writer_branches_must_all_be_readable_reader_needs_one() {
    assert!(compatible(r#""string""#, r#"["null","string"]"#));
    assert!(compatible(
        r#"["null","int"]"#,
        r#"["null","long","string"]"#
    ));
    let found = problems(r#"["null","string"]"#, r#""string""#);
    assert_eq!(kinds(&found), [IncompatibilityKind::TypeMismatch]);
    assert_eq!(found[0].location, "/0");
    let found = problems(r#"["null","string","int"]"#, r#"["null","string"]"#);
    assert_eq!(kinds(&found), [IncompatibilityKind::MissingUnionBranch]);
    assert_eq!(found[0].location, "/2");
    assert!(
        found[0].message.contains("writer type int"),
        "{}",
        found[0].message
    );
}

#[test]
fn a_union_branch_of_the_same_record_explains_why_it_cannot_read() {
    let user = |extra: &str| {
        record(
            "R",
            &format!(
                r#"{{"name":"u","type":["null",{}],"default":null}}"#,
                record(
                    "User",
                    &format!(r#"{{"name":"id","type":"string"}}{extra}"#)
                )
            ),
        )
    };
    let found = problems(&user(""), &user(r#",{"name":"email","type":"string"}"#));
    assert_eq!(
        kinds(&found),
        [IncompatibilityKind::ReaderFieldMissingDefaultValue]
    );
    assert_eq!(found[0].path, "R.u.email");
}

#[test]
fn fixed_needs_same_name_and_size() {
    let found = problems(
        r#"{"type":"fixed","name":"Hash","size":16}"#,
        r#"{"type":"fixed","name":"Hash","size":32}"#,
    );
    assert_eq!(kinds(&found), [IncompatibilityKind::FixedSizeMismatch]);
    assert_eq!(found[0].location, "/size");
    let found = problems(
        r#"{"type":"fixed","name":"Hash","size":16}"#,
        r#"{"type":"fixed","name":"Digest","size":16}"#,
    );
    assert_eq!(kinds(&found), [IncompatibilityKind::NameMismatch]);
    assert_eq!(found[0].location, "/name");
}

#[test]
fn named_types_compare_unqualified_names_so_a_namespace_change_is_compatible() {
    let a = r#"{"type":"record","name":"R","namespace":"com.a","fields":[]}"#;
    let b = r#"{"type":"record","name":"R","namespace":"com.b","fields":[]}"#;
    assert!(compatible(a, b) && compatible(b, a));
}

#[test]
fn paths_name_nested_fields_array_items_and_map_values() {
    let writer = record(
        "Outer",
        &format!(
            r#"{{"name":"id","type":"string"}},{{"name":"inner","type":{}}},{{"name":"tags","type":{{"type":"array","items":"long"}}}},{{"name":"attrs","type":{{"type":"map","values":"string"}}}}"#,
            record("Inner", r#"{"name":"a","type":"int"}"#)
        ),
    );
    let reader = record(
        "Outer",
        &format!(
            r#"{{"name":"id","type":"string"}},{{"name":"inner","type":{}}},{{"name":"tags","type":{{"type":"array","items":"int"}}}},{{"name":"attrs","type":{{"type":"map","values":"int"}}}}"#,
            record(
                "Inner",
                r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#
            )
        ),
    );
    let found = problems(&writer, &reader);
    let places: Vec<(&str, &str)> = found
        .iter()
        .map(|p| (p.location.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        places,
        [
            ("/fields/1/type/fields/1", "Outer.inner.b"),
            ("/fields/2/type/items", "Outer.tags[]"),
            ("/fields/3/type/values", "Outer.attrs{}"),
        ]
    );
}

#[test]
fn every_incompatibility_is_reported_not_only_the_first() {
    let writer = record(
        "R",
        r#"{"name":"a","type":"int"},{"name":"b","type":"string"},{"name":"c","type":{"type":"enum","name":"E","symbols":["X","Y"]}}"#,
    );
    let reader = record(
        "R",
        r#"{"name":"a","type":"boolean"},{"name":"b","type":"int"},{"name":"c","type":{"type":"enum","name":"E","symbols":["X"]}},{"name":"d","type":"long"}"#,
    );
    let found = problems(&writer, &reader);
    let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["R.a", "R.b", "R.c", "R.d"]);
    assert_eq!(
        found[0].message,
        "field 'a' (R.a): reader type boolean cannot read writer type int"
    );
}

#[test]
fn recursive_types_terminate_and_are_checked() {
    let list = |value: &str| {
        format!(
            r#"{{"type":"record","name":"Node","fields":[{{"name":"value","type":"{value}"}},{{"name":"next","type":["null","Node"],"default":null}}]}}"#
        )
    };
    assert!(compatible(&list("int"), &list("long")));
    let found = problems(&list("int"), &list("string"));
    assert_eq!(kinds(&found), [IncompatibilityKind::TypeMismatch]);
    assert_eq!(found[0].path, "Node.value");
}

#[test]
fn logical_types_count_as_their_underlying_type() {
    let ts = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
    assert!(compatible(ts, r#""long""#) && compatible(r#""long""#, ts));
    assert!(compatible(r#"{"type":"int","logicalType":"date"}"#, ts));
    assert!(!compatible(ts, r#"{"type":"int","logicalType":"date"}"#));
}

// ----- corrections of apache-avro's verdict (apache-avro rejects, Java and Python accept) --------------------------

#[test]
fn correction_type_alias_of_a_renamed_record_enum_and_fixed() {
    for (old, new) in [
        (
            record("Click", r#"{"name":"id","type":"string"}"#),
            r#"{"type":"record","name":"AdClick","aliases":["Click"],"fields":[{"name":"id","type":"string"}]}"#.to_string(),
        ),
        (
            r#"{"type":"enum","name":"Net","namespace":"io.ads","symbols":["A"]}"#.to_string(),
            r#"{"type":"enum","name":"Platform","namespace":"io.ads","aliases":["io.ads.Net"],"symbols":["A"]}"#.to_string(),
        ),
        (
            r#"{"type":"fixed","name":"H","size":4}"#.to_string(),
            r#"{"type":"fixed","name":"G","aliases":["H"],"size":4}"#.to_string(),
        ),
    ] {
        assert!(!apache_avro_compatible(&old, &new), "{new}");
        assert!(compatible(&old, &new), "{new}");
        assert_eq!(
            corrections(&old, &new),
            BTreeSet::from([Correction::NamedTypeAlias])
        );
        // The alias works for the reader only: the old schema cannot read the renamed one.
        assert_eq!(
            kinds(&problems(&new, &old)),
            [IncompatibilityKind::NameMismatch]
        );
    }
}

#[test]
fn correction_type_alias_without_a_dot_is_qualified_with_the_namespace_as_in_java() {
    // Python avro 1.12 compares the alias as written ("Net") with the writer's full name ("io.ads.Net") and rejects
    // this; Java and the specification qualify it first. See compat_corpus/python_divergences.jsonl.
    let old = r#"{"type":"enum","name":"Net","namespace":"io.ads","symbols":["A"]}"#;
    let new = r#"{"type":"enum","name":"Platform","namespace":"io.ads","aliases":["Net"],"symbols":["A"]}"#;
    assert!(!apache_avro_compatible(old, new));
    assert!(compatible(old, new));
}

#[test]
fn correction_decimal_precision_and_scale_are_ignored_like_java() {
    let bytes = |p: u32, s: u32| {
        format!(r#"{{"type":"bytes","logicalType":"decimal","precision":{p},"scale":{s}}}"#)
    };
    let fixed = |p: u32, s: u32| {
        format!(
            r#"{{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":{p},"scale":{s}}}"#
        )
    };
    for (old, new) in [
        (bytes(10, 2), bytes(12, 2)),
        (bytes(10, 2), bytes(10, 4)),
        (fixed(10, 2), fixed(12, 3)),
    ] {
        assert!(!apache_avro_compatible(&old, &new), "{old} -> {new}");
        assert!(
            compatible(&old, &new) && compatible(&new, &old),
            "{old} -> {new}"
        );
        assert_eq!(
            corrections(&old, &new),
            BTreeSet::from([Correction::DecimalParameters])
        );
    }
}

#[test]
fn correction_named_type_defined_at_another_place() {
    let money = record(
        "Money",
        r#"{"name":"micros","type":"long"},{"name":"currency","type":"string"}"#,
    );
    let old = record(
        "Order",
        &format!(r#"{{"name":"price","type":{money}}},{{"name":"tax","type":"Money"}}"#),
    );
    let new = record(
        "Order",
        &format!(r#"{{"name":"tax","type":{money}}},{{"name":"price","type":"Money"}}"#),
    );
    assert!(!apache_avro_compatible(&old, &new));
    assert!(compatible(&old, &new) && compatible(&new, &old));
    assert_eq!(
        corrections(&old, &new),
        BTreeSet::from([Correction::ResolvedReference])
    );
}

#[test]
fn correction_recursive_reference_whose_namespace_changed() {
    let list = |ns: &str| {
        format!(
            r#"{{"type":"record","name":"Node","namespace":"{ns}","fields":[{{"name":"next","type":["null","Node"],"default":null}}]}}"#
        )
    };
    let (old, new) = (list("com.a"), list("com.b"));
    assert!(!apache_avro_compatible(&old, &new));
    assert!(compatible(&old, &new));
    assert_eq!(
        corrections(&old, &new),
        BTreeSet::from([Correction::ResolvedReference])
    );
}

// ----- stricter than apache-avro (apache-avro accepts, Java and Python reject) ---------------------------------------

#[test]
fn stricter_decimal_on_bytes_vs_decimal_on_fixed() {
    let old = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;
    let new =
        r#"{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":10,"scale":2}"#;
    assert!(apache_avro_compatible(old, new));
    assert_eq!(
        kinds(&problems(old, new)),
        [IncompatibilityKind::TypeMismatch]
    );
}

#[test]
fn stricter_decimal_on_fixed_of_another_size() {
    let dec = |size: u32| {
        format!(
            r#"{{"type":"fixed","name":"D","size":{size},"logicalType":"decimal","precision":10,"scale":2}}"#
        )
    };
    assert!(apache_avro_compatible(&dec(8), &dec(16)));
    assert_eq!(
        kinds(&problems(&dec(8), &dec(16))),
        [IncompatibilityKind::FixedSizeMismatch]
    );
}

#[test]
fn stricter_uuid_on_string_vs_uuid_on_fixed() {
    let old = r#"{"type":"string","logicalType":"uuid"}"#;
    let new = r#"{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}"#;
    assert!(apache_avro_compatible(old, new));
    assert_eq!(
        kinds(&problems(old, new)),
        [IncompatibilityKind::TypeMismatch]
    );
}

#[test]
fn stricter_references_are_compared_by_definition_not_by_name() {
    // apache-avro sees `"tax": "Money"` on both sides and accepts without looking at the two `Money` definitions.
    let old = record(
        "Order",
        r#"{"name":"price","type":{"type":"record","name":"Money","fields":[{"name":"micros","type":"long"}]}},{"name":"tax","type":"Money"}"#,
    );
    let new = record(
        "Order",
        r#"{"name":"other","type":["null",{"type":"record","name":"Money","fields":[{"name":"micros","type":"string"}]}],"default":null},{"name":"tax","type":"Money"}"#,
    );
    assert!(apache_avro_compatible(&old, &new));
    let found = problems(&old, &new);
    assert_eq!(kinds(&found), [IncompatibilityKind::TypeMismatch]);
    assert_eq!(found[0].path, "Order.tax.micros");
}

// ----- joining apache-avro's verdict with the walk ------------------------------------------------------------------

fn walk_with(problems: Vec<Incompatibility>, corrections: &[Correction]) -> Outcome {
    Outcome {
        problems,
        corrections: corrections.iter().copied().collect(),
    }
}

#[test]
fn combine_keeps_apache_avro_verdict_unless_a_documented_correction_explains_it() {
    let rejected = Err(apache_avro::error::CompatibilityError::MissingSymbols);
    let partial = Ok(Compatibility::Partial);
    let full = Ok(Compatibility::Full);
    assert_eq!(combine(&full, walk_with(vec![], &[])), Ok(()));
    assert_eq!(
        combine(
            &rejected,
            walk_with(vec![], &[Correction::DecimalParameters])
        ),
        Ok(())
    );
    for base in [&rejected, &partial] {
        let verdict = combine(base, walk_with(vec![], &[]));
        let kinds: Vec<_> = verdict
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.kind)
            .collect();
        assert_eq!(kinds, [IncompatibilityKind::CheckerDisagreement]);
    }
    let found = problems(r#""long""#, r#""int""#);
    assert_eq!(combine(&full, walk_with(found.clone(), &[])), Err(found));
}

// ----- levels --------------------------------------------------------------------------------------------------------

#[test]
fn levels_parse_case_insensitively_and_print_confluent_names() {
    for level in CompatibilityLevel::ALL {
        assert_eq!(level.as_str().parse(), Ok(level));
        assert_eq!(level.as_str().to_lowercase().parse(), Ok(level));
        assert_eq!(level.to_string(), level.as_str());
        let json = serde_json::to_string(&level).unwrap_or_default();
        assert_eq!(json, format!("\"{}\"", level.as_str()));
        assert_eq!(
            serde_json::from_str::<CompatibilityLevel>(&json.to_lowercase()).ok(),
            Some(level)
        );
    }
    assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    assert_eq!(
        "full_transitive".parse(),
        Ok(CompatibilityLevel::FullTransitive)
    );
    let err = "SIDEWAYS".parse::<CompatibilityLevel>().err();
    assert!(err.is_some_and(|e| e
        .to_string()
        .starts_with("unknown compatibility level 'SIDEWAYS'")));
    assert!(serde_json::from_str::<CompatibilityLevel>("\"SIDEWAYS\"").is_err());
    let transitive: Vec<_> = CompatibilityLevel::ALL
        .into_iter()
        .filter(|l| l.is_transitive())
        .collect();
    assert_eq!(
        transitive,
        [
            CompatibilityLevel::BackwardTransitive,
            CompatibilityLevel::ForwardTransitive,
            CompatibilityLevel::FullTransitive
        ]
    );
}

/// v1 {id, legacy}, v2 {id, legacy, b=""}, v3 {id, b=""}; the new schema is {id, b} with no default for b.
/// new reads v3 and v2 but not v1 (no b); v3 reads new, v2 and v1 do not (no legacy).
fn history() -> (Schema, Vec<Schema>) {
    let id = r#"{"name":"id","type":"string"}"#;
    let legacy = r#"{"name":"legacy","type":"int"}"#;
    let b_default = r#"{"name":"b","type":"string","default":""}"#;
    let b = r#"{"name":"b","type":"string"}"#;
    let versions = vec![
        parse(&record("R", &format!("{id},{legacy}"))),
        parse(&record("R", &format!("{id},{legacy},{b_default}"))),
        parse(&record("R", &format!("{id},{b_default}"))),
    ];
    (parse(&record("R", &format!("{id},{b}"))), versions)
}

/// The `{oldSchemaVersion: N}` lines of a check, in order.
fn failing_versions(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.starts_with("{oldSchemaVersion"))
        .cloned()
        .collect()
}

#[test]
fn non_transitive_levels_check_only_the_newest_version() {
    let (new, versions) = history();
    for level in [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::Forward,
        CompatibilityLevel::Full,
    ] {
        assert_eq!(
            check(level, &new, &versions),
            Vec::<String>::new(),
            "{level}"
        );
    }
    assert!(check(CompatibilityLevel::FullTransitive, &new, &[]).is_empty());
}

#[test]
fn transitive_levels_check_every_version_newest_first() {
    let (new, versions) = history();
    let backward = check(CompatibilityLevel::BackwardTransitive, &new, &versions);
    assert_eq!(failing_versions(&backward), ["{oldSchemaVersion: 1}"]);
    assert!(backward[0].starts_with(
        "Incompatibility{type:READER_FIELD_MISSING_DEFAULT_VALUE, location:/fields/1, message:the new schema \
         cannot read data written with version 1: reader field 'b' (R.b) has no default"
    ));
    assert_eq!(
        backward.last().map(String::as_str),
        Some("{compatibility: 'BACKWARD_TRANSITIVE'}")
    );
    let forward = check(CompatibilityLevel::ForwardTransitive, &new, &versions);
    assert_eq!(
        failing_versions(&forward),
        ["{oldSchemaVersion: 2}", "{oldSchemaVersion: 1}"]
    );
    assert!(forward[0]
        .contains("version 2 cannot read data written with the new schema: reader field 'legacy'"));
    let full = check(CompatibilityLevel::FullTransitive, &new, &versions);
    assert_eq!(
        failing_versions(&full),
        ["{oldSchemaVersion: 2}", "{oldSchemaVersion: 1}"]
    );
    // Version 1 fails both ways: one line per direction.
    let v1_lines = full.iter().filter(|m| m.contains("version 1")).count();
    assert_eq!(v1_lines, 2);
}

#[test]
fn forward_is_old_reading_new_and_backward_is_new_reading_old() {
    let (new, versions) = history();
    let v1 = &versions[..1];
    let backward = check(CompatibilityLevel::Backward, &new, v1);
    assert!(backward[0].contains("reader field 'b'"), "{backward:?}");
    let forward = check(CompatibilityLevel::Forward, &new, v1);
    assert!(forward[0].contains("reader field 'legacy'"), "{forward:?}");
    assert!(check(CompatibilityLevel::None, &new, v1).is_empty());
}

#[test]
fn check_versions_reports_the_registry_version_numbers() {
    let (new, versions) = history();
    let numbered = [(7, &versions[0])];
    let messages = check_versions(CompatibilityLevel::Backward, &new, &numbered);
    assert_eq!(failing_versions(&messages), ["{oldSchemaVersion: 7}"]);
    assert!(messages.iter().any(|m| m.starts_with("{oldSchema: '{")));
}
