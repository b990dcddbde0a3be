//! docs/json.md is the `--json` contract, and this file holds it to what
//! the commands print: every output kept in `tests/snapshots/json/` (which
//! `json_golden` compares with what the binary prints today) is checked
//! against the key table of its command's section, so a key that is
//! printed but not documented, documented but not printed, or printed with
//! another type than the table says fails here.
//!
//! **The tables** (every section of docs/json.md that documents keys):
//! `| key | type | meaning |`, one row per key (or several keys of one type,
//! `` `a`, `b` ``). A key inside an object is `outer.key`; inside the
//! objects of an array, `outer[].key`. A key whose children have no rows is
//! not looked into (e.g. a `provenance` object "as in `inspect --json`").
//! The type is `string`, `number`, `boolean` (or `bool`), `object`,
//! `array`, `array of strings`, `array of numbers`, `time` (an RFC 3339 UTC
//! string), or several joined with `or` (`string or null`); `optional`
//! before it means the key is absent when it does not apply. Every other
//! key is printed in every object it belongs to, except in the object of a
//! host that cannot be reached, `{"host": …, "error": …}`. Keys are printed
//! in the order of their rows (checked on the snapshots, which keep it).
//!
//! The snapshots hold placeholders for values that vary between runs
//! (`"<number>"`, `"<time>"`, …: see `json_golden`); each counts as a value
//! of its type.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::json_golden::Json;

/// Which section of docs/json.md (the first code span of its heading)
/// documents each snapshot of `tests/snapshots/json/`.
const SNAPSHOTS: &[(&str, &str)] = &[
    ("build", "slipway build TAG --json"),
    ("list", "slipway list --json"),
    ("inspect", "slipway inspect REL --json"),
    ("verify-local", "slipway verify REL --json"),
    ("export", "slipway export REL -o FILE --json"),
    ("import", "slipway import FILE --json"),
    ("sign", "slipway sign REL --json"),
    ("forget", "slipway forget REL… --json"),
    ("gc", "slipway gc --json"),
    ("init", "slipway init --json"),
    ("push", "slipway push REL -t TARGET --json"),
    ("push-one-host-failed", "slipway push REL -t TARGET --json"),
    ("activate", "slipway deploy|activate|rollback … --json"),
    ("deploy", "slipway deploy|activate|rollback … --json"),
    (
        "deploy-plan",
        "slipway deploy|push|activate|rollback|prune|service … --plan --json",
    ),
    ("rollback", "slipway deploy|activate|rollback … --json"),
    ("activate-expect-mismatch", "slipway deploy|activate|rollback … --json"),
    ("deploy-health-failed", "slipway deploy|activate|rollback … --json"),
    ("deploy-push-failed", "slipway deploy|activate|rollback … --json"),
    ("status", "slipway status -t TARGET --json"),
    ("status-unreachable", "slipway status -t TARGET --json"),
    ("history", "slipway history -t TARGET --json [-n N | --all]"),
    ("verify-target", "slipway verify -t TARGET [REL] --json"),
    ("host-check", "slipway host check -t TARGET --json"),
    ("provenance", "slipway provenance [REL] -t TARGET --json"),
    ("diff", "slipway diff A B --json"),
    ("diff-target", "slipway diff REL -t TARGET --json"),
    ("prune", "slipway prune -t TARGET --json"),
];

/// Sections the golden scenario does not run (each needs a world of its
/// own: an S3 server, a service, an sshd to install into), and where the
/// output is held to docs/json.md instead ([`assert_documented`]).
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "slipway service status|start|stop|restart -t TARGET --json",
        "service.rs: every `service status` its tests read",
    ),
    ("slipway host install -t TARGET --json", "host.rs: `host install` again"),
    (
        "slipway deploy|push|activate|rollback|prune|service … --plan --json",
        "service.rs: every `service … --plan` (the golden scenario runs `deploy --plan`)",
    ),
    ("slipway publish REL --to REMOTE --json", "remote.rs: round_trip"),
    ("slipway fetch REL --from REMOTE --json", "remote.rs: round_trip"),
    (
        "slipway publish REL --to REMOTE --plan --json",
        "remote.rs: every `publish --plan` (publish_plan)",
    ),
    (
        "slipway gc --remote REMOTE --json",
        "remote.rs: remote_gc_removes_a_killed_publish_its_claim_and_what_only_it_uploaded",
    ),
    (
        "slipway man --dir DIR --json",
        "an array of file names: no keys to check",
    ),
];

/// Assert that `value`, the `--json` output of a command the golden
/// scenario does not run (one of [`ELSEWHERE`]), matches the key table of
/// its `section` in docs/json.md; the tests that run it call this on the
/// output they read.
pub fn assert_documented(section: &str, value: &Value) {
    assert!(
        ELSEWHERE.iter().any(|(s, _)| *s == section),
        "`{section}` is not one of json_doc's ELSEWHERE"
    );
    let found = problems("this output", section, value, &read_doc());
    assert!(
        found.is_empty(),
        "docs/json.md and the `--json` output disagree:\n{}\n{value:#}",
        found.join("\n")
    );
}

/// One JSON type a table may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    String,
    Time,
    Number,
    Boolean,
    Object,
    Array,
    ArrayOfStrings,
    ArrayOfNumbers,
    Null,
}

impl Type {
    fn parse(word: &str) -> Option<Type> {
        Some(match word {
            "string" => Type::String,
            "time" => Type::Time,
            "number" => Type::Number,
            "boolean" | "bool" => Type::Boolean,
            "object" => Type::Object,
            "array" => Type::Array,
            "array of strings" => Type::ArrayOfStrings,
            "array of numbers" => Type::ArrayOfNumbers,
            "null" => Type::Null,
            _ => return None,
        })
    }

    /// Does `v` (a snapshot value, placeholders included) have this type?
    fn admits(self, v: &Value) -> bool {
        let placeholder = v.as_str().filter(|s| s.starts_with('<') && s.ends_with('>'));
        if let Some(p) = placeholder
            && matches!(
                p,
                "<number>" | "<string>" | "<time>" | "<bool>" | "<object>" | "<array>"
            )
        {
            return match self {
                Type::String => matches!(p, "<string>" | "<time>"),
                Type::Time => p == "<time>",
                Type::Number => p == "<number>",
                Type::Boolean => p == "<bool>",
                Type::Object => p == "<object>",
                Type::Array | Type::ArrayOfStrings | Type::ArrayOfNumbers => p == "<array>",
                Type::Null => false,
            };
        }
        match self {
            Type::String => v.is_string(),
            Type::Time => v.as_str().is_some_and(is_time),
            Type::Number => v.is_number(),
            Type::Boolean => v.is_boolean(),
            Type::Object => v.is_object(),
            Type::Array => v.is_array(),
            Type::ArrayOfStrings => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Type::ArrayOfNumbers => v.as_array().is_some_and(|a| a.iter().all(Value::is_number)),
            Type::Null => v.is_null(),
        }
    }
}

/// An RFC 3339 UTC time as slipway prints them (`2026-12-06T09:04:00Z`,
/// `…00.123Z`), or the snapshots' placeholder for one.
fn is_time(s: &str) -> bool {
    if s == "<time>" {
        return true;
    }
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 || !s.ends_with('Z') {
        return false;
    }
    let head = b
        .iter()
        .zip(shape)
        .all(|(c, want)| if *want == b'd' { c.is_ascii_digit() } else { c == want });
    let frac = &b[shape.len()..b.len() - 1];
    head && (frac.is_empty() || (frac[0] == b'.' && frac.len() > 1 && frac[1..].iter().all(u8::is_ascii_digit)))
}

/// One documented key.
#[derive(Debug, Clone)]
struct Key {
    types: Vec<Type>,
    optional: bool,
    line: usize,
    /// Where it is in the table (its row, then its place in the row): the
    /// order it is printed in, among the keys of its object.
    order: (usize, usize),
}

/// The key table of one section: `outer[].key` → its row.
#[derive(Debug, Default)]
struct Section {
    keys: BTreeMap<String, Key>,
}

/// docs/json.md, section by section (the first code span of each heading).
fn read_doc() -> BTreeMap<String, Section> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_doc(&text).unwrap_or_else(|errors| panic!("docs/json.md: {}", errors.join("\n")))
}

fn parse_doc(text: &str) -> Result<BTreeMap<String, Section>, Vec<String>> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut current: Option<String> = None;
    let mut in_code = false;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            current = line.split('`').nth(1).map(str::to_string);
            if let Some(c) = &current {
                sections.entry(c.clone()).or_default();
            }
            continue;
        }
        let Some(row) = line.strip_prefix("| `") else { continue };
        let Some(section) = &current else {
            errors.push(format!("line {n}: a key table outside a command's section"));
            continue;
        };
        let row = format!("`{}", row.trim_end_matches('|').trim_end());
        let cells: Vec<&str> = row.splitn(3, " | ").collect();
        let [keys, ty, _meaning] = cells[..] else {
            errors.push(format!("line {n}: not a `| key | type | meaning |` row"));
            continue;
        };
        let (optional, ty) = match ty.trim().strip_prefix("optional ") {
            Some(rest) => (true, rest),
            None => (false, ty.trim()),
        };
        let types: Option<Vec<Type>> = ty.split(" or ").map(|w| Type::parse(w.trim())).collect();
        let Some(types) = types else {
            errors.push(format!(
                "line {n}: `{ty}` is not a type this test knows (see tests/cli/json_doc.rs)"
            ));
            continue;
        };
        let names: Vec<&str> = keys.split('`').skip(1).step_by(2).collect();
        if names.is_empty() {
            errors.push(format!("line {n}: no key in `{keys}`"));
        }
        let table = sections.entry(section.clone()).or_default();
        for (i, name) in names.into_iter().enumerate() {
            let key = Key {
                types: types.clone(),
                optional,
                line: n,
                order: (n, i),
            };
            if let Some(before) = table.keys.insert(name.to_string(), key) {
                errors.push(format!(
                    "line {n}: `{name}` is documented twice in `{section}` (also line {})",
                    before.line
                ));
            }
        }
    }
    if errors.is_empty() { Ok(sections) } else { Err(errors) }
}

/// Where in an output a key is (`releases[].name`).
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('.').map_or("", |i| &path[..i])
}

struct Problems<'a> {
    snapshot: &'a str,
    section: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    /// Note a problem once (the objects of an array repeat them).
    fn push(&mut self, what: impl fmt::Display) {
        let line = format!("{} (`{}`): {what}", self.snapshot, self.section);
        if !self.list.contains(&line) {
            self.list.push(line);
        }
    }
}

impl Section {
    /// Whether the table looks into `path` (documents any key under it).
    fn documents_inside(&self, path: &str) -> bool {
        let prefix = format!("{path}.");
        self.keys.keys().any(|k| k.starts_with(&prefix))
    }

    /// Check one printed object found at `path` ("" at the top).
    fn check_object(&self, path: &str, object: &serde_json::Map<String, Value>, p: &mut Problems) {
        for (k, v) in object {
            let full = join(path, k);
            let Some(key) = self.keys.get(&full) else {
                p.push(format_args!(
                    "`{full}` is printed but docs/json.md does not document it"
                ));
                continue;
            };
            if !key.types.iter().any(|t| t.admits(v)) {
                p.push(format_args!(
                    "`{full}` is printed as {v} but docs/json.md (line {}) says {:?}",
                    key.line, key.types
                ));
            }
            match v {
                Value::Object(inner) if self.documents_inside(&full) => self.check_object(&full, inner, p),
                Value::Array(items) if self.documents_inside(&format!("{full}[]")) => {
                    for item in items {
                        match item {
                            Value::Object(inner) => self.check_object(&format!("{full}[]"), inner, p),
                            other => p.push(format_args!("`{full}[]` holds {other}, not an object")),
                        }
                    }
                }
                _ => {}
            }
        }
        // A host that cannot be reached: `{"host", "error"}` and nothing else.
        let unreachable = path.is_empty()
            && object.len() == 2
            && object.contains_key("host")
            && object.get("error").is_some_and(Value::is_string);
        for (full, key) in &self.keys {
            if parent_of(full) == path && !key.optional && !unreachable {
                let name = &full[full.rfind('.').map_or(0, |i| i + 1)..];
                if !object.contains_key(name) {
                    p.push(format_args!(
                        "`{full}` (docs/json.md line {}) is not printed; mark it `optional` if it may be absent",
                        key.line
                    ));
                }
            }
        }
    }

    /// Check that the keys of `v` (found at `path`), as printed, come in the
    /// order of the table (the snapshots keep it; `serde_json::Value` does not).
    fn check_order(&self, path: &str, v: &Json, p: &mut Problems) {
        match v {
            Json::Object(entries) => {
                let mut last: Option<((usize, usize), &str)> = None;
                for (k, inner) in entries {
                    let full = join(path, k);
                    let Some(key) = self.keys.get(&full) else { continue };
                    if let Some((before, prev)) = last
                        && key.order < before
                    {
                        p.push(format_args!(
                            "`{full}` is printed after `{prev}`, but docs/json.md (line {}) lists it before",
                            key.line
                        ));
                    }
                    last = Some((key.order, k));
                    match inner {
                        Json::Object(_) if self.documents_inside(&full) => self.check_order(&full, inner, p),
                        Json::Array(items) if self.documents_inside(&format!("{full}[]")) => {
                            for item in items {
                                self.check_order(&format!("{full}[]"), item, p);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Json::Array(items) if path.is_empty() => {
                for item in items {
                    self.check_order("", item, p);
                }
            }
            _ => {}
        }
    }

    /// Check a whole output: an object, or an array of objects (one per host).
    fn check(&self, v: &Value, p: &mut Problems) {
        match v {
            Value::Object(o) => self.check_object("", o, p),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Object(o) => self.check_object("", o, p),
                        other => p.push(format_args!("an element is {other}, not an object")),
                    }
                }
            }
            other => p.push(format_args!("the output is {other}, not an object or an array")),
        }
    }
}

/// Check `value`, one command's `--json` output, against the table of
/// `section` in docs/json.md; the problems found, one a line.
fn problems(snapshot: &str, section: &str, value: &Value, doc: &BTreeMap<String, Section>) -> Vec<String> {
    let mut p = Problems {
        snapshot,
        section,
        list: Vec::new(),
    };
    match doc.get(section) {
        Some(table) if !table.keys.is_empty() => table.check(value, &mut p),
        Some(_) => p.push("the section has no key table"),
        None => p.push("docs/json.md has no section with this heading"),
    }
    p.list
}

#[test]
fn json_doc_documents_every_key_of_every_command_with_its_type() {
    let doc = read_doc();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/json");
    let mut errors = Vec::new();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    files.sort();
    for file in &files {
        let Some((_, section)) = SNAPSHOTS.iter().find(|(s, _)| s == file) else {
            errors.push(format!(
                "{file}.json: which section of docs/json.md documents it? (SNAPSHOTS in tests/cli/json_doc.rs)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(dir.join(format!("{file}.json"))).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}.json: {e}"));
        errors.extend(problems(file, section, &value, &doc));
        let printed: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}.json: {e}"));
        if let Some(table) = doc.get(*section) {
            let mut p = Problems {
                snapshot: file,
                section,
                list: Vec::new(),
            };
            table.check_order("", &printed, &mut p);
            errors.extend(p.list);
        }
    }
    for (snapshot, _) in SNAPSHOTS {
        if !files.iter().any(|f| f == snapshot) {
            errors.push(format!("{snapshot}.json: no such snapshot (run the json_golden test)"));
        }
    }
    // Every command's section is checked here, or named as checked elsewhere.
    for (heading, table) in &doc {
        if !heading.starts_with("slipway ") {
            continue;
        }
        let here = SNAPSHOTS.iter().any(|(_, s)| s == heading);
        let there = ELSEWHERE.iter().any(|(s, _)| s == heading);
        if !here && !there {
            errors.push(format!(
                "docs/json.md: no snapshot runs `{heading}` (add one to the json_golden scenario)"
            ));
        }
        if here && table.keys.is_empty() {
            errors.push(format!("docs/json.md: `{heading}` has no key table"));
        }
    }
    assert!(
        errors.is_empty(),
        "docs/json.md and the `--json` output disagree:\n{}",
        errors.join("\n")
    );
}

/// The checker itself: an undocumented key, a missing one, a wrong type, a
/// time that is a number and keys out of order are each caught; an optional
/// key may be absent.
#[test]
fn json_doc_check_catches_an_undocumented_key_a_missing_key_a_wrong_type_and_the_wrong_order() {
    let doc = parse_doc(
        "# x\n## `slipway demo --json`\n\n| key | type | meaning |\n| --- | --- | --- |\n\
         | `host` | string | the host |\n| `at` | time | when |\n| `n`, `m` | number or null | counts |\n\
         | `items` | array | things |\n| `items[].name` | string | a name |\n| `note` | optional string | sometimes |\n",
    )
    .unwrap();
    let check = |v: Value| problems("demo", "slipway demo --json", &v, &doc);
    let good = serde_json::json!([{"host": "a", "at": "2026-12-06T09:04:00.123Z", "n": 1, "m": null, "items": [{"name": "x"}]}]);
    assert_eq!(check(good), Vec::<String>::new());
    let bad =
        serde_json::json!({"host": 1, "at": 1700000000, "n": 1, "items": [{"name": "x", "size": 2}], "extra": true});
    let found = check(bad).join("\n");
    for want in [
        "`host` is printed as 1",
        "`at` is printed as 1700000000",
        "`m` (docs/json.md line 8) is not printed",
        "`items[].size` is printed but docs/json.md does not document it",
        "`extra` is printed but docs/json.md does not document it",
    ] {
        assert!(found.contains(want), "missing `{want}` in:\n{found}");
    }
    assert!(!found.contains("`note`"), "{found}");
    // Keys out of the table's order.
    let printed: Json = serde_json::from_str(r#"{"at": "<time>", "host": "a"}"#).unwrap();
    let mut p = Problems {
        snapshot: "demo",
        section: "slipway demo --json",
        list: Vec::new(),
    };
    doc["slipway demo --json"].check_order("", &printed, &mut p);
    assert_eq!(
        p.list,
        ["demo (`slipway demo --json`): `host` is printed after `at`, but docs/json.md (line 6) lists it before"]
    );
}
