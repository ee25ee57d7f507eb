#!/usr/bin/env python3
"""Generates the schema-compatibility corpus next to this script.

    python3 schemas/tests/compat_corpus/generate.py            # rewrites pairs.jsonl and python_divergences.jsonl
    python3 schemas/tests/compat_corpus/generate.py --check    # exits 1 if the committed files are out of date

pairs.jsonl: one {"name", "old", "new"} per line. The expected verdicts are NOT stored: the oracle test
(tests/python/test_compat_oracle.py) computes them live with Python avro's ReaderWriterCompatibilityChecker and
compares them with adstream's under BACKWARD (new reads old), FORWARD (old reads new) and FULL (both).

python_divergences.jsonl: pairs where Python avro 1.12 decides differently from Java Avro (which Confluent Schema
Registry runs) and adstream follows Java; each line also carries "java" (the Java verdicts) and "why".

Deterministic: no randomness, pairs in a fixed order, names unique. Standard library only.
"""

import itertools
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTRACT = HERE.parent.parent  # schemas/, holding the adstream *.avsc contract

NO_DEFAULT = object()
PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
# A default value valid for each primitive, used when a field of that type gets a default.
PRIMITIVE_DEFAULT = {
    "null": None,
    "boolean": False,
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "bytes": "",
    "string": "",
}

pairs = []
divergences = []


def add(name, old, new):
    pairs.append({"name": name, "old": old, "new": new})


def field(name, type_, default=NO_DEFAULT, aliases=None):
    out = {"name": name, "type": type_}
    if default is not NO_DEFAULT:
        out["default"] = default
    if aliases is not None:
        out["aliases"] = aliases
    return out


def record(name, fields, namespace=None, aliases=None):
    out = {"type": "record", "name": name}
    if namespace is not None:
        out["namespace"] = namespace
    if aliases is not None:
        out["aliases"] = aliases
    out["fields"] = fields
    return out


def enum(name, symbols, default=None, namespace=None, aliases=None):
    out = {"type": "enum", "name": name}
    if namespace is not None:
        out["namespace"] = namespace
    if aliases is not None:
        out["aliases"] = aliases
    out["symbols"] = symbols
    if default is not None:
        out["default"] = default
    return out


def fixed(name, size, namespace=None, aliases=None, **extra):
    out = {"type": "fixed", "name": name, "size": size}
    if namespace is not None:
        out["namespace"] = namespace
    if aliases is not None:
        out["aliases"] = aliases
    out.update(extra)
    return out


def array(items):
    return {"type": "array", "items": items}


def amap(values):
    return {"type": "map", "values": values}


def wrap(type_, default=NO_DEFAULT):
    """A record with one field 'v' of the given type: the shape most field-level cases use."""
    return record("R", [field("id", "string"), field("v", type_, default)])


# --- 1. every pair of primitive types, at the top level and as a field --------------------------------------------
for a, b in itertools.combinations_with_replacement(PRIMITIVES, 2):
    add(f"primitive/{a}-{b}", a, b)
for a, b in itertools.combinations(PRIMITIVES, 2):
    add(f"field-primitive/{a}-{b}", wrap(a), wrap(b))

# --- 2. field additions and removals, with and without defaults ---------------------------------------------------
BASE = [field("id", "string"), field("amount", "long")]
for type_ in PRIMITIVES:
    add(f"field-add/{type_}-with-default", record("R", BASE), record("R", BASE + [field("x", type_, PRIMITIVE_DEFAULT[type_])]))
    add(f"field-add/{type_}-without-default", record("R", BASE), record("R", BASE + [field("x", type_)]))
add("field-add/nullable-default-null", record("R", BASE), record("R", BASE + [field("x", ["null", "string"], None)]))
add("field-add/nullable-no-default", record("R", BASE), record("R", BASE + [field("x", ["null", "string"])]))
add("field-add/enum-field-default", record("R", BASE), record("R", BASE + [field("x", enum("E", ["A", "B"]), "A")]))
add("field-add/enum-with-enum-default-no-field-default", record("R", BASE),
    record("R", BASE + [field("x", enum("E", ["A", "B"], default="A"))]))
add("field-add/array-default-empty", record("R", BASE), record("R", BASE + [field("x", array("int"), [])]))
add("field-add/map-default-empty", record("R", BASE), record("R", BASE + [field("x", amap("long"), {})]))
add("field-add/record-default", record("R", BASE),
    record("R", BASE + [field("x", record("Inner", [field("a", "int")]), {"a": 1})]))
add("field-add/record-no-default", record("R", BASE), record("R", BASE + [field("x", record("Inner", [field("a", "int")]))]))
add("field-add/two-fields-one-default", record("R", BASE),
    record("R", BASE + [field("x", "int", 0), field("y", "string")]))
add("field-add/first-position-with-default", record("R", BASE), record("R", [field("x", "int", 7)] + BASE))
add("field-remove/with-default", record("R", BASE + [field("x", "int", 0)]), record("R", BASE))
add("field-remove/without-default", record("R", BASE + [field("x", "int")]), record("R", BASE))
add("field-remove/all-fields", record("R", BASE), record("R", []))
add("field-replace/different-name-no-default", record("R", [field("a", "int")]), record("R", [field("b", "int")]))
add("field-replace/different-name-defaults", record("R", [field("a", "int", 0)]), record("R", [field("b", "int", 0)]))
add("field-reorder", record("R", BASE + [field("x", "int")]), record("R", [field("x", "int")] + list(reversed(BASE))))
add("field-default-added", record("R", BASE), record("R", [field("id", "string", ""), field("amount", "long", 0)]))
add("field-default-removed", record("R", [field("id", "string", ""), field("amount", "long", 0)]), record("R", BASE))
add("record-empty-both", record("R", []), record("R", []))

# --- 3. promotions and non-promotions inside fields, arrays, maps and unions --------------------------------------
NUMERIC = ["int", "long", "float", "double"]
for a, b in itertools.permutations(NUMERIC + ["string", "bytes"], 2):
    add(f"array-items/{a}-{b}", array(a), array(b))
for a, b in [("int", "long"), ("long", "double"), ("float", "double"), ("string", "bytes"), ("int", "string"), ("double", "float")]:
    add(f"map-values/{a}-{b}", amap(a), amap(b))
    add(f"union-branch-promotion/{a}-{b}", ["null", a], ["null", b])
add("array-to-map", array("int"), amap("int"))
add("array-of-array/int-long", array(array("int")), array(array("long")))
add("map-of-array/long-int", amap(array("long")), amap(array("int")))
add("array-items/record-field-added-default",
    array(record("Item", [field("a", "int")])), array(record("Item", [field("a", "int"), field("b", "int", 0)])))
add("array-items/record-field-added-no-default",
    array(record("Item", [field("a", "int")])), array(record("Item", [field("a", "int"), field("b", "int")])))
add("map-values/enum-symbol-added", amap(enum("E", ["A", "B"])), amap(enum("E", ["A", "B", "C"])))
add("map-values/enum-symbol-added-default", amap(enum("E", ["A", "B"], default="A")), amap(enum("E", ["A", "B", "C"], default="A")))
add("array-items/nullable-wrap", array("string"), array(["null", "string"]))
add("field-array-to-scalar", wrap(array("int")), wrap("int"))
add("field-map-to-record", wrap(amap("int")), wrap(record("M", [])))

# --- 4. enums --------------------------------------------------------------------------------------------------------
add("enum/same", enum("E", ["A", "B"]), enum("E", ["A", "B"]))
add("enum/symbol-added", enum("E", ["A", "B"]), enum("E", ["A", "B", "C"]))
add("enum/symbol-removed", enum("E", ["A", "B", "C"]), enum("E", ["A", "B"]))
add("enum/symbol-added-with-default", enum("E", ["A", "B"], default="A"), enum("E", ["A", "B", "C"], default="A"))
add("enum/symbol-removed-with-default", enum("E", ["A", "B", "C"], default="A"), enum("E", ["A", "B"], default="A"))
add("enum/symbol-added-default-only-new", enum("E", ["A", "B"]), enum("E", ["A", "B", "C"], default="C"))
add("enum/symbol-removed-default-only-new", enum("E", ["A", "B", "C"]), enum("E", ["A", "B"], default="A"))
add("enum/symbol-removed-default-only-old", enum("E", ["A", "B", "C"], default="A"), enum("E", ["A", "B"]))
add("enum/symbols-reordered", enum("E", ["A", "B", "C"]), enum("E", ["C", "A", "B"]))
add("enum/disjoint", enum("E", ["A", "B"]), enum("E", ["C", "D"]))
add("enum/disjoint-with-defaults", enum("E", ["A", "B"], default="A"), enum("E", ["C", "D"], default="C"))
add("enum/default-changed", enum("E", ["A", "B"], default="A"), enum("E", ["A", "B"], default="B"))
add("enum/renamed-no-alias", enum("E", ["A"]), enum("F", ["A"]))
add("enum/renamed-with-alias", enum("E", ["A"]), enum("F", ["A"], aliases=["E"]))
add("enum/renamed-alias-and-symbol-added", enum("E", ["A"]), enum("F", ["A", "B"], aliases=["E"]))
add("enum/to-string", enum("E", ["A"]), "string")
add("enum/namespace-changed", enum("E", ["A"], namespace="a"), enum("E", ["A"], namespace="b"))
add("enum/in-field-symbol-added", wrap(enum("Status", ["ON", "OFF"])), wrap(enum("Status", ["ON", "OFF", "PAUSED"])))
add("enum/in-field-symbol-added-default", wrap(enum("Status", ["ON", "OFF", "UNKNOWN"], default="UNKNOWN")),
    wrap(enum("Status", ["ON", "OFF", "PAUSED", "UNKNOWN"], default="UNKNOWN")))
add("enum/field-removed-enum-has-default", record("R", [field("id", "string"), field("s", enum("S", ["X", "Y"], default="X"))]),
    record("R", [field("id", "string")]))

# --- 5. unions -------------------------------------------------------------------------------------------------------
add("union/branch-added", ["null", "string"], ["null", "string", "int"])
add("union/branch-removed", ["null", "string", "int"], ["null", "string"])
add("union/reordered", ["null", "string", "int"], ["int", "null", "string"])
add("union/disjoint", ["null", "string"], ["int", "boolean"])
add("union/single-branch-vs-plain", ["string"], "string")
add("union/wrap-nullable", "string", ["null", "string"])
add("union/wrap-nullable-field-default", wrap("string"), wrap(["null", "string"], None))
add("union/unwrap-nullable-field", wrap(["null", "string"], None), wrap("string"))
add("union/non-null-to-string-long", "int", ["string", "long"])
add("union/long-string-to-int", ["long", "string"], "int")
add("union/int-string-to-long-bytes", ["int", "string"], ["long", "bytes"])
add("union/long-bytes-to-int-string", ["long", "bytes"], ["int", "string"])
add("union/int-to-union-float-double", "int", ["float", "double"])
add("union/record-to-union", record("U", [field("a", "int")]), ["null", record("U", [field("a", "int")])])
add("union/record-to-union-changed", record("U", [field("a", "int")]),
    ["null", record("U", [field("a", "int"), field("b", "string")])])
add("union/record-to-union-of-other-record", record("U", [field("a", "int")]), ["null", record("V", [field("a", "int")])])
add("union/two-records-one-removed",
    [record("A", [field("x", "int")]), record("B", [field("y", "int")])], [record("A", [field("x", "int")])])
add("union/two-records-one-changed",
    [record("A", [field("x", "int")]), record("B", [field("y", "int")])],
    [record("A", [field("x", "long")]), record("B", [field("y", "string")])])
add("union/enum-branch-symbol-added", ["null", enum("E", ["A"])], ["null", enum("E", ["A", "B"])])
add("union/array-branch-items-promoted", ["null", array("int")], ["null", array("long")])
add("union/map-to-union-with-map", amap("string"), ["null", amap("string")])
add("union/field-branch-added", wrap(["null", "string"], None), wrap(["null", "string", "long"], None))
add("union/field-branch-removed", wrap(["null", "string", "long"], None), wrap(["null", "string"], None))
add("union/field-nullable-record-field-added",
    record("R", [field("u", ["null", record("User", [field("id", "string")])], None)]),
    record("R", [field("u", ["null", record("User", [field("id", "string"), field("email", "string")])], None)]))
add("union/fixed-branches-size", ["null", fixed("F", 4)], ["null", fixed("F", 8)])

# --- 6. nested records ---------------------------------------------------------------------------------------------
def outer(inner_fields, inner_name="Inner", ns=None):
    return record("Outer", [field("id", "string"), field("inner", record(inner_name, inner_fields))], namespace=ns)


add("nested/same", outer([field("a", "int")]), outer([field("a", "int")]))
add("nested/field-added-default", outer([field("a", "int")]), outer([field("a", "int"), field("b", "string", "")]))
add("nested/field-added-no-default", outer([field("a", "int")]), outer([field("a", "int"), field("b", "string")]))
add("nested/field-promoted", outer([field("a", "int")]), outer([field("a", "long")]))
add("nested/field-type-changed", outer([field("a", "int")]), outer([field("a", "string")]))
add("nested/renamed-no-alias", outer([field("a", "int")]), outer([field("a", "int")], inner_name="Inner2"))
add("nested/renamed-alias", outer([field("a", "int")]),
    record("Outer", [field("id", "string"), field("inner", record("Inner2", [field("a", "int")], aliases=["Inner"]))]))
add("nested/three-levels-field-added-no-default",
    record("A", [field("b", record("B", [field("c", record("C", [field("x", "int")]))]))]),
    record("A", [field("b", record("B", [field("c", record("C", [field("x", "int"), field("y", "int")]))]))]))
add("nested/three-levels-promotion",
    record("A", [field("b", record("B", [field("c", record("C", [field("x", "float")]))]))]),
    record("A", [field("b", record("B", [field("c", record("C", [field("x", "double")]))]))]))
add("nested/many-problems",
    record("R", [field("a", "int"), field("b", "string"), field("c", enum("E", ["X", "Y"]))]),
    record("R", [field("a", "boolean"), field("b", "int"), field("c", enum("E", ["X"])), field("d", "long")]))
add("nested/record-to-enum", wrap(record("N", [])), wrap(enum("N", ["A"])))

# --- 7. fixed ----------------------------------------------------------------------------------------------------------
add("fixed/same", fixed("F", 16), fixed("F", 16))
add("fixed/size-grown", fixed("F", 16), fixed("F", 32))
add("fixed/renamed-no-alias", fixed("F", 16), fixed("G", 16))
add("fixed/renamed-with-alias", fixed("F", 16), fixed("G", 16, aliases=["F"]))
add("fixed/renamed-alias-size-changed", fixed("F", 16), fixed("G", 8, aliases=["F"]))
add("fixed/to-bytes", fixed("F", 16), "bytes")
add("fixed/to-string", fixed("F", 16), "string")
add("fixed/namespace-changed", fixed("F", 4, namespace="a"), fixed("F", 4, namespace="b"))
add("fixed/in-field-size", wrap(fixed("Hash", 16)), wrap(fixed("Hash", 20)))

# --- 8. renames with and without aliases (records and fields) ----------------------------------------------------------
add("rename/record-no-alias", record("R", BASE), record("S", BASE))
add("rename/record-alias", record("R", BASE), record("S", BASE, aliases=["R"]))
add("rename/record-alias-in-old-only", record("R", BASE, aliases=["S"]), record("S", BASE))
add("rename/record-several-aliases", record("R", BASE), record("S", BASE, aliases=["Q", "R"]))
add("rename/record-alias-qualified", record("R", BASE, namespace="com.acme"),
    record("S", BASE, namespace="com.acme", aliases=["com.acme.R"]))
add("rename/record-alias-other-namespace-qualified", record("R", BASE, namespace="com.old"),
    record("S", BASE, namespace="com.new", aliases=["com.old.R"]))
add("rename/record-alias-wrong-namespace", record("R", BASE, namespace="com.old"),
    record("S", BASE, namespace="com.new", aliases=["com.other.R"]))
add("rename/record-alias-and-field-added-no-default", record("R", BASE), record("S", BASE + [field("z", "int")], aliases=["R"]))
add("rename/field-no-alias", record("R", [field("id", "string"), field("cost", "long")]),
    record("R", [field("id", "string"), field("cost_micros", "long")]))
add("rename/field-alias", record("R", [field("id", "string"), field("cost", "long")]),
    record("R", [field("id", "string"), field("cost_micros", "long", aliases=["cost"])]))
add("rename/field-alias-with-default", record("R", [field("id", "string"), field("cost", "long")]),
    record("R", [field("id", "string"), field("cost_micros", "long", 0, aliases=["cost"])]))
add("rename/field-alias-and-promotion", record("R", [field("cost", "int")]),
    record("R", [field("cost_micros", "long", aliases=["cost"])]))
add("rename/field-alias-wrong-type", record("R", [field("cost", "string")]),
    record("R", [field("cost_micros", "long", aliases=["cost"])]))
add("rename/field-alias-in-old-only", record("R", [field("cost", "long", aliases=["cost_micros"])]),
    record("R", [field("cost_micros", "long")]))
add("rename/field-several-aliases", record("R", [field("c", "long")]),
    record("R", [field("cost_micros", "long", aliases=["cost", "c"])]))
add("rename/field-alias-name-also-present", record("R", [field("a", "int"), field("b", "string")]),
    record("R", [field("a", "int", aliases=["b"])]))
add("rename/field-swap-names", record("R", [field("a", "int"), field("b", "string")]),
    record("R", [field("a", "string"), field("b", "int")]))

# --- 9. namespaces ---------------------------------------------------------------------------------------------------
add("namespace/added", record("R", BASE), record("R", BASE, namespace="com.acme"))
add("namespace/changed", record("R", BASE, namespace="com.a"), record("R", BASE, namespace="com.b"))
add("namespace/fullname-in-name", record("R", BASE, namespace="com.a"), {"type": "record", "name": "com.b.R", "fields": BASE})
add("namespace/nested-inherits-changed", outer([field("a", "int")], ns="com.a"), outer([field("a", "int")], ns="com.b"))
add("namespace/nested-explicit-namespace",
    record("Outer", [field("inner", record("Inner", [field("a", "int")], namespace="x"))], namespace="a"),
    record("Outer", [field("inner", record("Inner", [field("a", "int")], namespace="y"))], namespace="a"))
add("namespace/enum-in-namespaced-record",
    record("R", [field("e", enum("E", ["A", "B"]))], namespace="n1"),
    record("R", [field("e", enum("E", ["A"]))], namespace="n2"))

# --- 10. logical types ------------------------------------------------------------------------------------------------
def dec_bytes(precision, scale):
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def dec_fixed(name, size, precision, scale):
    return fixed(name, size, logicalType="decimal", precision=precision, scale=scale)


def logical(base, name):
    return {"type": base, "logicalType": name}


add("decimal/same", dec_bytes(10, 2), dec_bytes(10, 2))
add("decimal/precision-grown", dec_bytes(10, 2), dec_bytes(12, 2))
add("decimal/scale-changed", dec_bytes(10, 2), dec_bytes(10, 4))
add("decimal/precision-and-scale", dec_bytes(9, 2), dec_bytes(18, 6))
add("decimal/to-bytes", dec_bytes(10, 2), "bytes")
add("decimal/to-string", dec_bytes(10, 2), "string")
add("decimal/bytes-to-fixed", dec_bytes(10, 2), dec_fixed("D", 8, 10, 2))
add("decimal/fixed-precision-changed", dec_fixed("D", 8, 10, 2), dec_fixed("D", 8, 12, 2))
add("decimal/fixed-size-changed-same-precision", dec_fixed("D", 8, 10, 2), dec_fixed("D", 16, 10, 2))
add("decimal/fixed-to-plain-fixed", dec_fixed("D", 8, 10, 2), fixed("D", 8))
add("decimal/fixed-renamed", dec_fixed("D", 8, 10, 2), dec_fixed("E", 8, 10, 2))
add("decimal/field-precision-grown", wrap(dec_bytes(10, 2)), wrap(dec_bytes(20, 2)))
add("decimal/nullable-scale-changed", wrap(["null", dec_bytes(10, 2)], None), wrap(["null", dec_bytes(10, 3)], None))
for old, new in [
    (logical("long", "timestamp-millis"), "long"),
    (logical("long", "timestamp-millis"), logical("long", "timestamp-micros")),
    (logical("long", "timestamp-micros"), logical("long", "local-timestamp-micros")),
    (logical("long", "timestamp-millis"), "int"),
    (logical("long", "timestamp-millis"), "double"),
    (logical("int", "date"), "int"),
    (logical("int", "date"), "long"),
    (logical("int", "date"), logical("long", "timestamp-millis")),
    (logical("int", "time-millis"), logical("long", "time-micros")),
    (logical("int", "time-millis"), logical("int", "date")),
    (logical("string", "uuid"), "string"),
    (logical("string", "uuid"), "bytes"),
    (logical("long", "timestamp-millis"), logical("string", "uuid")),
]:
    add(f"logical/{old if isinstance(old, str) else old['logicalType']}-{new if isinstance(new, str) else new['logicalType']}", old, new)
add("logical/uuid-string-to-uuid-fixed", logical("string", "uuid"), fixed("U", 16, logicalType="uuid"))
add("logical/duration-to-fixed", fixed("Dur", 12, logicalType="duration"), fixed("Dur", 12))
add("logical/field-event-time-int-to-timestamp", wrap("int"), wrap(logical("long", "timestamp-millis")))

# --- 11. recursive types -----------------------------------------------------------------------------------------------
def linked(value_type, extra=(), ns=None, name="Node"):
    return record(name, [field("value", value_type), field("next", ["null", name], None)] + list(extra), namespace=ns)


add("recursive/same", linked("int"), linked("int"))
add("recursive/value-promoted", linked("int"), linked("long"))
add("recursive/value-changed", linked("int"), linked("string"))
add("recursive/field-added-default", linked("int"), linked("int", [field("w", "int", 0)]))
add("recursive/field-added-no-default", linked("int"), linked("int", [field("w", "int")]))
add("recursive/namespace-changed", linked("int", ns="a"), linked("int", ns="b"))
add("recursive/renamed-with-alias", linked("int"),
    record("Node2", [field("value", "int"), field("next", ["null", "Node2"], None)], aliases=["Node"]))
add("recursive/renamed-no-alias", linked("int"), linked("int", name="Node2"))
TREE = record("Tree", [field("label", "string"), field("children", array("Tree"))])
add("recursive/tree-same", TREE, TREE)
add("recursive/tree-children-to-map", TREE, record("Tree", [field("label", "string"), field("children", amap("Tree"))]))
add("recursive/tree-label-bytes", TREE, record("Tree", [field("label", "bytes"), field("children", array("Tree"))]))
MUTUAL_A = record("A", [field("b", ["null", record("B", [field("a", ["null", "A"], None), field("n", "int")])], None)])
add("recursive/mutual-same", MUTUAL_A, MUTUAL_A)
add("recursive/mutual-inner-promoted", MUTUAL_A,
    record("A", [field("b", ["null", record("B", [field("a", ["null", "A"], None), field("n", "long")])], None)]))
add("recursive/mutual-inner-field-added-no-default", MUTUAL_A,
    record("A", [field("b", ["null", record("B", [field("a", ["null", "A"], None), field("n", "int"), field("m", "int")])], None)]))

# --- 12. named types defined at another place, and references whose definitions differ ---------------------------------
MONEY = record("Money", [field("micros", "long"), field("currency", "string")])
MONEY_B = record("Money", [field("micros", "long"), field("currency", "string"), field("fx", "double", 1.0)])
add("moved/definition-swapped-between-fields",
    record("Order", [field("price", MONEY), field("tax", "Money")]),
    record("Order", [field("tax", MONEY), field("price", "Money")]))
add("moved/definition-swapped-and-extended",
    record("Order", [field("price", MONEY), field("tax", "Money")]),
    record("Order", [field("tax", MONEY_B), field("price", "Money")]))
add("moved/definition-into-union",
    record("Order", [field("price", MONEY), field("tax", ["null", "Money"], None)]),
    record("Order", [field("tax", ["null", MONEY], None), field("price", "Money")]))
add("moved/enum-definition-swapped",
    record("Ad", [field("a", enum("Color", ["RED", "BLUE"])), field("b", "Color")]),
    record("Ad", [field("b", enum("Color", ["RED", "BLUE", "GREEN"])), field("a", "Color")]))
add("moved/reference-points-to-changed-type",
    record("Order", [field("price", MONEY), field("tax", "Money")]),
    record("Order", [field("other", ["null", record("Money", [field("micros", "string")])], None), field("tax", "Money")]))
add("moved/fixed-definition-swapped",
    record("K", [field("a", fixed("H", 8)), field("b", "H")]),
    record("K", [field("b", fixed("H", 8)), field("a", "H")]))

add("moved/reference-in-union-points-to-changed-type",
    record("Order", [field("price", MONEY), field("tax", ["null", "Money"], None)]),
    record("Order", [field("other", ["null", record("Money", [field("micros", "int")])], None),
                     field("tax", ["null", "Money"], None)]))

# --- 13. corner cases: recursion through unions and arrays, aliases inside unions, null fields --------------------------
add("corner/recursion-array-to-nullable-array",
    record("Node", [field("kids", array("Node"))]),
    record("Node", [field("kids", ["null", array("Node")], None)]))
add("corner/recursion-nullable-array-to-array",
    record("Node", [field("kids", ["null", array("Node")], None)]),
    record("Node", [field("kids", array("Node"))]))
add("corner/mutual-recursion-renamed-with-alias", MUTUAL_A,
    record("A", [field("b", ["null", record("B2", [field("a", ["null", "A"], None), field("n", "int")], aliases=["B"])], None)]))
add("corner/union-of-records-one-renamed-with-alias",
    [record("A", [field("x", "int")]), record("B", [field("y", "int")])],
    [record("A", [field("x", "int")]), record("C", [field("y", "int")], aliases=["B"])])
add("corner/record-to-union-renamed-with-alias",
    record("A", [field("x", "int")]), ["null", record("Z", [field("x", "long")], aliases=["A"])])
add("corner/enum-to-union-of-string-and-enum", enum("E", ["A", "B"]), ["string", enum("E", ["A", "B"])])
add("corner/string-to-union-of-enum-and-bytes", "string", [enum("E", ["A"]), "bytes"])
add("corner/null-typed-field-added-with-default", record("R", BASE), record("R", BASE + [field("nothing", "null", None)]))
add("corner/null-typed-field-added-without-default", record("R", BASE), record("R", BASE + [field("nothing", "null")]))
add("corner/only-defaults-vs-empty", record("R", []), record("R", [field("a", "int", 1), field("b", ["null", "string"], None)]))
add("corner/same-record-used-twice-changed",
    record("P", [field("from", record("Point", [field("x", "int")])), field("to", "Point")]),
    record("P", [field("from", record("Point", [field("x", "int"), field("y", "int")])), field("to", "Point")]))
add("corner/nested-union-of-arrays-of-maps",
    ["null", array(amap("int"))], ["null", array(amap("long")), "string"])
add("corner/map-of-recursive-record",
    amap(linked("int")), amap(linked("int", [field("tag", "string", "")])))

# --- 14. the adstream contract evolving ------------------------------------------------------------------------------------
for avsc in sorted(CONTRACT.glob("*.avsc")):
    v1 = json.loads(avsc.read_text())
    stem = avsc.stem
    fields = v1["fields"]
    add(f"contract/{stem}/identical", v1, v1)
    add(f"contract/{stem}/add-optional-field", v1,
        dict(v1, fields=fields + [{"name": "note", "type": ["null", "string"], "default": None, "doc": "v2"}]))
    add(f"contract/{stem}/add-required-field", v1, dict(v1, fields=fields + [{"name": "note", "type": "string"}]))
    add(f"contract/{stem}/drop-first-field", v1, dict(v1, fields=fields[1:]))
    first = fields[0]
    add(f"contract/{stem}/rename-first-field-with-alias", v1,
        dict(v1, fields=[dict(first, name=first["name"] + "_v2", aliases=[first["name"]])] + fields[1:]))
    longs = [i for i, f in enumerate(fields) if f["type"] == "long"]
    if longs:
        i = longs[0]
        add(f"contract/{stem}/long-to-int", v1, dict(v1, fields=fields[:i] + [dict(fields[i], type="int")] + fields[i + 1:]))
        add(f"contract/{stem}/long-to-double", v1, dict(v1, fields=fields[:i] + [dict(fields[i], type="double")] + fields[i + 1:]))

# --- Python avro 1.12 vs Java: type aliases are not qualified with the namespace in Python ------------------------------
ALIAS_WHY = (
    "Python avro compares the alias exactly as written with the writer's full name; Java (and the Avro "
    "specification) first qualify an alias without a dot with the type's namespace. adstream follows Java."
)
divergences.append({
    "name": "divergence/unqualified-alias-in-namespace",
    "old": record("R", BASE, namespace="com.acme"),
    "new": record("S", BASE, namespace="com.acme", aliases=["R"]),
    "java": {"backward": True, "forward": False, "full": False},
    "why": ALIAS_WHY,
})
divergences.append({
    "name": "divergence/unqualified-alias-matches-null-namespace-writer-in-python",
    "old": record("R", BASE),
    "new": record("S", BASE, namespace="com.acme", aliases=["R"]),
    "java": {"backward": False, "forward": False, "full": False},
    "why": ALIAS_WHY,
})
divergences.append({
    "name": "divergence/unqualified-enum-alias-in-namespace",
    "old": enum("E", ["A"], namespace="com.acme"),
    "new": enum("F", ["A"], namespace="com.acme", aliases=["E"]),
    "java": {"backward": True, "forward": False, "full": False},
    "why": ALIAS_WHY,
})


def render(items):
    return "".join(json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n" for item in items)


def main():
    names = [p["name"] for p in pairs + divergences]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        sys.exit(f"duplicate pair names: {duplicates}")
    outputs = {HERE / "pairs.jsonl": render(pairs), HERE / "python_divergences.jsonl": render(divergences)}
    if "--check" in sys.argv[1:]:
        stale = [str(path) for path, text in outputs.items() if not path.exists() or path.read_text() != text]
        if stale:
            sys.exit(f"out of date, rerun {Path(__file__).name}: {', '.join(stale)}")
        return
    for path, text in outputs.items():
        path.write_text(text)
    print(f"{len(pairs)} pairs, {len(divergences)} divergences written to {HERE}")


if __name__ == "__main__":
    main()
