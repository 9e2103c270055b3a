//! Repository rules that reviewers would otherwise have to remember, checked
//! on every `cargo test` (in the spirit of rust-analyzer's `tidy.rs`). Each
//! rule reads files only: no server, no database, well under a second.
//!
//! Each rule lists every offending `file:line`, not just the first, and says
//! how to fix it. A rule is meant to fail when the code drifts from what the
//! documentation promises; fix the code or the documentation, not the rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A text file of the repository, read once.
struct SourceFile {
    /// Path relative to the repository root, with `/` separators.
    rel: String,
    text: String,
}

impl SourceFile {
    fn lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.text.lines().enumerate().map(|(i, l)| (i + 1, l))
    }

    /// `path:line` of a byte offset.
    fn at(&self, offset: usize) -> String {
        let line = self.text[..offset].matches('\n').count() + 1;
        format!("{}:{line}", self.rel)
    }
}

/// Folders never checked: build output, VCS data, tool caches, and what
/// `cargo run` or libFuzzer write at run time (all git-ignored).
fn skipped_dir(rel: &str, name: &str) -> bool {
    name == "target"
        || name == "node_modules"
        || (name.starts_with('.') && name != ".ci")
        || matches!(
            rel,
            "data" | "fuzz/corpus" | "fuzz/artifacts" | "fuzz/coverage"
        )
}

/// Markdown, Rust, proto, shell, YAML, TOML, Python, requirement lists,
/// Dockerfiles, and extension-less scripts (a `#!` first line).
fn is_text_file(path: &Path, text: &str) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match path.extension().and_then(|e| e.to_str()) {
        Some("md" | "rs" | "proto" | "sh" | "yaml" | "yml" | "toml" | "py" | "txt") => true,
        Some(_) => name.starts_with("Dockerfile"),
        None => name.starts_with("Dockerfile") || text.starts_with("#!"),
    }
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let child = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        if path.is_dir() {
            if !skipped_dir(&child, name) {
                walk(&path, &child, out);
            }
        } else if let Ok(text) = fs::read_to_string(&path)
            && is_text_file(&path, &text)
        {
            out.push(SourceFile { rel: child, text });
        }
    }
}

fn text_files() -> Vec<SourceFile> {
    let mut files = Vec::new();
    walk(&root(), "", &mut files);
    assert!(
        files.iter().any(|f| f.rel == "src/lib.rs"),
        "tidy found no src/lib.rs: is CARGO_MANIFEST_DIR the repository root?"
    );
    files
}

fn files_under(prefix: &str, extension: &str) -> Vec<SourceFile> {
    text_files()
        .into_iter()
        .filter(|f| f.rel.starts_with(prefix) && f.rel.ends_with(extension))
        .collect()
}

fn read(rel: &str) -> SourceFile {
    let text =
        fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("tidy needs {rel}: {e}"));
    SourceFile {
        rel: rel.to_owned(),
        text,
    }
}

/// Fails with every offence, one per line, under a title saying how to fix.
fn report(rule: &str, offences: &[String]) {
    if !offences.is_empty() {
        panic!(
            "tidy: {rule}\n{} offence(s):\n  {}\n",
            offences.len(),
            offences.join("\n  ")
        );
    }
}

/// Rust source with comments blanked out (same length, same line breaks), so
/// that prose mentioning a crate is not mistaken for a path. String literals
/// are kept as they are.
fn without_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            out.push(c as char);
            if c == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_string = false;
            }
            i += 1;
        } else if c == b'"' {
            in_string = true;
            out.push('"');
            i += 1;
        } else if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                out.push(' ');
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            while i < bytes.len() && !bytes[i..].starts_with(b"*/") {
                out.push(if bytes[i] == b'\n' { '\n' } else { ' ' });
                i += 1;
            }
            if i < bytes.len() {
                out.push_str("  ");
                i += 2;
            }
        } else {
            // Keep multi-byte characters whole.
            let ch = text[i..].chars().next().expect("a character");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

/// Every path a `use` tree names, flattened: `use a::{b, c::{d, e}}` gives
/// `a::b`, `a::c::d`, `a::c::e`.
fn flatten_use_tree(tree: &str) -> Vec<String> {
    fn parse(tokens: &[String], pos: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut path = prefix.to_owned();
        while *pos < tokens.len() {
            let token = tokens[*pos].as_str();
            match token {
                "{" => {
                    *pos += 1;
                    loop {
                        if *pos >= tokens.len() {
                            return;
                        }
                        if tokens[*pos] == "}" {
                            *pos += 1;
                            return;
                        }
                        parse(tokens, pos, &path, out);
                        if *pos < tokens.len() && tokens[*pos] == "," {
                            *pos += 1;
                        }
                    }
                }
                "," | "}" => break,
                "as" => {
                    // `as name`: the alias does not change what is imported.
                    *pos += 2;
                }
                "::" => {
                    path.push_str("::");
                    *pos += 1;
                }
                segment => {
                    path.push_str(segment);
                    *pos += 1;
                }
            }
        }
        out.push(path);
    }
    static TOKENIZER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"::|[{},]|[A-Za-z_][A-Za-z0-9_]*|\*").expect("regex"));
    let tokens: Vec<String> = TOKENIZER
        .find_iter(tree)
        .map(|m| m.as_str().to_owned())
        .collect();
    let mut out = Vec::new();
    let mut pos = 0;
    parse(&tokens, &mut pos, "", &mut out);
    out
}

/// Paths a layer must not name: `forbidden` is a regex alternation of crate
/// or module paths (`tonic\w*|axum`).
struct ForbiddenPaths {
    /// `x::…` anywhere in code.
    in_code: Regex,
    /// A flattened `use` path that starts with one of them.
    imported: Regex,
}

impl ForbiddenPaths {
    fn new(forbidden: &str) -> ForbiddenPaths {
        ForbiddenPaths {
            in_code: Regex::new(&format!(r"(?:^|[^A-Za-z0-9_:])(?:::)?({forbidden})\s*::"))
                .expect("regex"),
            imported: Regex::new(&format!(r"^(?:::)?(?:{forbidden})(?:::|$)")).expect("regex"),
        }
    }

    /// Offences where `file` names a forbidden path, in a `use` (grouped or
    /// not) or in a path (`x::…`); one per line.
    fn offences(&self, file: &SourceFile) -> Vec<String> {
        static USE_STATEMENT: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\buse\s+([^;]+);").expect("regex"));
        let code = without_comments(&file.text);
        let mut offences: BTreeMap<String, String> = BTreeMap::new();
        for m in self.in_code.captures_iter(&code) {
            let found = m.get(1).expect("group");
            offences
                .entry(file.at(found.start()))
                .or_insert_with(|| format!("`{}::…`", found.as_str()));
        }
        for m in USE_STATEMENT.captures_iter(&code) {
            let tree = m.get(1).expect("group");
            for imported in flatten_use_tree(tree.as_str()) {
                if self.imported.is_match(&imported) {
                    offences.insert(file.at(tree.start()), format!("`use {imported}`"));
                }
            }
        }
        offences
            .into_iter()
            .map(|(at, what)| format!("{at}: {what}"))
            .collect()
    }
}

#[test]
fn domain_names_no_transport_or_storage_crate() {
    let forbidden = ForbiddenPaths::new(
        r"tonic[A-Za-z0-9_]*|sea_orm[A-Za-z0-9_]*|sea_query[A-Za-z0-9_]*|sqlx|axum[A-Za-z0-9_]*|hyper[A-Za-z0-9_]*|http|prost[A-Za-z0-9_]*",
    );
    let offences: Vec<String> = files_under("src/domain/", ".rs")
        .iter()
        .flat_map(|f| forbidden.offences(f))
        .collect();
    report(
        "src/domain is the core: it names no tonic, axum, sea-orm (or their \
         HTTP, protobuf, SQL crates). Move the code to src/grpc, src/metrics or \
         src/store, or pass a domain type across.",
        &offences,
    );
}

#[test]
fn grpc_does_not_import_the_store() {
    let forbidden =
        ForbiddenPaths::new(r"crate::store|tokend::store|super::super::store|super::store");
    let offences: Vec<String> = files_under("src/grpc/", ".rs")
        .iter()
        .flat_map(|f| forbidden.offences(f))
        .collect();
    report(
        "src/grpc is a transport adapter: it reaches the database only through \
         the core (src/domain), never by importing src/store.",
        &offences,
    );
}

#[test]
fn rest_does_not_import_the_store() {
    let forbidden = ForbiddenPaths::new(
        r"crate::store|tokend::store|super::super::store|super::store|sea_orm[A-Za-z0-9_]*",
    );
    let offences: Vec<String> = files_under("src/rest/", ".rs")
        .iter()
        .flat_map(|f| forbidden.offences(f))
        .collect();
    report(
        "src/rest is a transport adapter like src/grpc: it reaches the database \
         only through the core (src/domain), never by importing src/store or sea-orm.",
        &offences,
    );
}

#[test]
fn metrics_knows_neither_grpc_nor_the_store() {
    let forbidden = metrics_forbidden_paths();
    let offences: Vec<String> = files_under("src/metrics/", ".rs")
        .iter()
        .flat_map(|f| forbidden.offences(f))
        .collect();
    report(
        "src/metrics reaches the core through the `TokenRepository` trait and \
         knows no transport: it imports neither src/grpc (the gRPC side feeds \
         it through `Metrics::record_call`) nor tonic nor src/store (the \
         server passes a `PoolStatusSource` and maps each statement to a \
         `StatementKind`).",
        &offences,
    );
}

/// What src/metrics must not name: the gRPC side, tonic, and anything of
/// the store.
fn metrics_forbidden_paths() -> ForbiddenPaths {
    ForbiddenPaths::new(
        r"crate::grpc|tokend::grpc|super::super::grpc|super::grpc|tonic[A-Za-z0-9_]*|crate::store|tokend::store|super::super::store|super::store",
    )
}

#[test]
fn the_metrics_rule_catches_any_store_path() {
    let forbidden = metrics_forbidden_paths();
    for text in [
        "use crate::store::StatementKind;\n",
        "use crate::{domain::Token, store::StatementKind};\n",
        "fn f(kind: crate::store::StatementKind) {}\n",
        "use tokend::store::SeaStore;\n",
    ] {
        let file = SourceFile {
            rel: "src/metrics/mod.rs".to_owned(),
            text: text.to_owned(),
        };
        assert_eq!(forbidden.offences(&file).len(), 1, "not caught: {text}");
    }
}

// ---------------------------------------------------------------------------
// Error reasons: code and docs/errors.md agree
// ---------------------------------------------------------------------------

/// UPPER_SNAKE string literals (`"TOKEN_REVOKED"`) with their offsets.
fn reason_literals(text: &str) -> Vec<(String, usize)> {
    let literal = Regex::new(r#""([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)""#).expect("regex");
    literal
        .captures_iter(text)
        .map(|c| {
            let m = c.get(1).expect("group");
            (m.as_str().to_owned(), m.start())
        })
        .collect()
}

/// The body of `fn <name>` in Rust source: from its line to the first line
/// that closes it (`}` in column 0).
fn function_body<'a>(file: &'a SourceFile, name: &str) -> (&'a str, usize) {
    let start = Regex::new(&format!(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?fn\s+{name}\b"))
        .expect("regex")
        .find(&file.text)
        .unwrap_or_else(|| {
            panic!(
                "tidy: {} has no `fn {name}`; update tests/tidy.rs if it moved",
                file.rel
            )
        })
        .start();
    let end = file.text[start..]
        .find("\n}\n")
        .map_or(file.text.len(), |e| start + e + 3);
    (&file.text[start..end], start)
}

/// A Markdown section: from the heading line `heading` to the next heading
/// of the same or a higher level. Returns the text and its byte offset.
fn section<'a>(file: &'a SourceFile, heading: &str) -> (&'a str, usize) {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = file
        .text
        .match_indices(heading)
        .map(|(i, _)| i)
        .find(|i| *i == 0 || file.text.as_bytes()[i - 1] == b'\n')
        .unwrap_or_else(|| panic!("tidy: {} has no section `{heading}`", file.rel));
    let body_start = start + heading.len();
    let mut end = file.text.len();
    let mut offset = body_start;
    for line in file.text[body_start..].split_inclusive('\n') {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            end = offset;
            break;
        }
        offset += line.len();
    }
    (&file.text[start..end], start)
}

/// The backticked first cells of a Markdown table's rows in `text`
/// (`` | `REASON` | … ``), with their offsets relative to `text`.
fn first_cells(text: &str) -> Vec<(String, usize)> {
    let row = Regex::new(r"(?m)^\|\s*`([^`]+)`\s*\|").expect("regex");
    row.captures_iter(text)
        .map(|c| {
            let m = c.get(1).expect("group");
            (m.as_str().to_owned(), m.start())
        })
        .collect()
}

/// Reports both directions of a code ⟷ documentation correspondence.
fn compare_reasons(
    offences: &mut Vec<String>,
    code: (&SourceFile, &str, usize),
    docs: (&SourceFile, &str, usize),
    what: &str,
) {
    let (code_file, code_text, code_offset) = code;
    let (docs_file, docs_text, docs_offset) = docs;
    let in_code: BTreeMap<String, usize> = reason_literals(code_text)
        .into_iter()
        .rev()
        .map(|(reason, at)| (reason, code_offset + at))
        .collect();
    let in_docs: BTreeMap<String, usize> = first_cells(docs_text)
        .into_iter()
        .rev()
        .map(|(reason, at)| (reason, docs_offset + at))
        .collect();
    for (reason, at) in &in_code {
        if !in_docs.contains_key(reason) {
            offences.push(format!(
                "{}: reason `{reason}` of {what} has no row in {}",
                code_file.at(*at),
                docs_file.rel
            ));
        }
    }
    for (reason, at) in &in_docs {
        if !in_code.contains_key(reason) {
            offences.push(format!(
                "{}: documented reason `{reason}` of {what} is not in {}",
                docs_file.at(*at),
                code_file.rel
            ));
        }
    }
}

#[test]
fn error_reasons_match_the_catalogue() {
    let problem = read("src/domain/problem.rs");
    let status = read("src/grpc/status.rs");
    let errors = read("docs/errors.md");
    let mut offences = Vec::new();

    // Every reason `problem_kind` can choose has a catalogue row, and every
    // catalogue row is a reason it can choose.
    let (body, body_at) = function_body(&problem, "problem_kind");
    let (catalogue, catalogue_at) = section(&errors, "## Catalogue");
    compare_reasons(
        &mut offences,
        (&problem, body, body_at),
        (&errors, catalogue, catalogue_at),
        "every face's errors (`problem_kind`)",
    );

    // Reasons made elsewhere (the transports' rejections, the metrics
    // endpoint's missing token) are documented somewhere in errors.md.
    let problem_kind_reasons: BTreeSet<String> =
        reason_literals(body).into_iter().map(|(r, _)| r).collect();
    for file in [&problem, &status] {
        for (reason, at) in reason_literals(&file.text) {
            if !problem_kind_reasons.contains(&reason)
                && !errors.text.contains(&format!("`{reason}`"))
            {
                offences.push(format!(
                    "{}: reason `{reason}` is not documented in docs/errors.md",
                    file.at(at)
                ));
            }
        }
    }

    // The metrics endpoint's table names only reasons the code has.
    let (metrics, metrics_at) = section(&errors, "## The metrics endpoints");
    let known: BTreeSet<String> = reason_literals(&problem.text)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for (reason, at) in first_cells(metrics) {
        if !known.contains(&reason) {
            offences.push(format!(
                "{}: documented reason `{reason}` of the metrics endpoint is not in {}",
                errors.at(metrics_at + at),
                problem.rel
            ));
        }
    }
    report(
        "every error reason the code can return is documented in docs/errors.md \
         (the catalogue table for every face, the metrics endpoint's table for \
         its refusals), and every documented reason exists in the code.",
        &offences,
    );
}

// ---------------------------------------------------------------------------
// The repository stands alone
// ---------------------------------------------------------------------------

/// Text that points outside the repository or at a tracker no reader has.
fn outside_references() -> Vec<(Regex, &'static str)> {
    // ASCII classes (`(?-u)`): the text is prose and code, and Unicode word
    // boundaries would make every file a slow scan.
    vec![
        (
            Regex::new(r"(?i-u)\bspec\.md\b").expect("regex"),
            "names a contract file outside the repository; point at docs/reference.md",
        ),
        (
            Regex::new(r"(?-u)\.\./shared\b").expect("regex"),
            "points outside the repository",
        ),
        (
            Regex::new(r"(?m-u)(?:^|[\s`'(\x22=:])/(?:work|home|Users)/").expect("regex"),
            "is an absolute path of one machine",
        ),
        (
            Regex::new(r"(?i-u)\b(?:issue|ticket|audit item|item)s?\s*(?:#\s*)?\d+")
                .expect("regex"),
            "refers to a tracker no reader has; say what it is about instead",
        ),
        (
            Regex::new(r"(?m-u)(?:^|[\s(])#\d+\b").expect("regex"),
            "looks like a tracker reference; say what it is about instead",
        ),
    ]
}

/// Attack payloads that docs/security.md and the tests quote as hostile
/// input: they look like paths but refer to nothing.
const HOSTILE_INPUT_EXAMPLES: &[&str] = &["../../etc/passwd"];

/// Lexically resolves `target` relative to the folder of `from` (both
/// relative to the root); `None` when it climbs above the root.
fn resolve(from: &str, target: &str) -> Option<String> {
    let mut parts: Vec<String> = Path::new(from)
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(s) => s.to_str().map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for component in Path::new(target).components() {
        match component {
            Component::Normal(s) => parts.push(s.to_str()?.to_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation but `-`
/// and `_` dropped, spaces to `-`.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let heading = Regex::new(r"(?m)^#{1,6} (.+)$").expect("regex");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence {
            continue;
        }
        if let Some(c) = heading.captures(line) {
            let base = anchor_of(&c[1]);
            let n = seen.entry(base.clone()).or_insert(0);
            out.insert(if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            });
            *n += 1;
        }
    }
    out
}

#[test]
fn repository_stands_alone() {
    let files = text_files();
    let by_path: BTreeMap<&str, &SourceFile> = files.iter().map(|f| (f.rel.as_str(), f)).collect();
    let patterns = outside_references();
    let climbing = Regex::new(r"(?-u)(?:\.\./)+[\w./-]*").expect("regex");
    let link = Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let root = root();
    let mut offences = Vec::new();

    for file in &files {
        for (pattern, why) in &patterns {
            for m in pattern.find_iter(&file.text) {
                // Report the line of the match itself, not of a newline the
                // pattern consumed before it.
                let text = m.as_str();
                let leading = text.len() - text.trim_start().len();
                offences.push(format!(
                    "{}: `{}` {why}",
                    file.at(m.start() + leading),
                    text.trim()
                ));
            }
        }
        for m in climbing.find_iter(&file.text) {
            if resolve(&file.rel, m.as_str()).is_none()
                && !HOSTILE_INPUT_EXAMPLES.contains(&m.as_str())
            {
                offences.push(format!(
                    "{}: `{}` climbs out of the repository",
                    file.at(m.start()),
                    m.as_str()
                ));
            }
        }
        if !file.rel.ends_with(".md") {
            continue;
        }
        // Relative Markdown links resolve to a file or folder of the
        // repository, and their anchors to a heading of the target.
        let mut in_fence = false;
        for (number, line) in file.lines() {
            if line.starts_with("```") {
                in_fence = !in_fence;
            }
            if in_fence {
                continue;
            }
            for c in link.captures_iter(line) {
                let target = &c[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target, None),
                };
                let resolved = if path.is_empty() {
                    Some(file.rel.clone())
                } else {
                    resolve(&file.rel, path)
                };
                let Some(resolved) = resolved else {
                    offences.push(format!(
                        "{}:{number}: link `{target}` points outside the repository",
                        file.rel
                    ));
                    continue;
                };
                if !root.join(&resolved).exists() {
                    offences.push(format!(
                        "{}:{number}: link `{target}`: no such file in the repository",
                        file.rel
                    ));
                    continue;
                }
                if let (Some(anchor), Some(target_file)) = (anchor, by_path.get(resolved.as_str()))
                    && resolved.ends_with(".md")
                    && !anchors(&target_file.text).contains(anchor)
                {
                    offences.push(format!(
                        "{}:{number}: link `{target}`: {resolved} has no heading with that anchor",
                        file.rel
                    ));
                }
            }
        }
    }
    report(
        "the repository stands alone: no link or path points outside it, every \
         relative Markdown link resolves, and no text refers to a tracker \
         (docs/reference.md is the contract; say what a change is about).",
        &offences,
    );
}

// ---------------------------------------------------------------------------
// ARCHITECTURE.md's code map
// ---------------------------------------------------------------------------

#[test]
fn code_map_names_every_folder_and_top_level_module_of_src() {
    let architecture = read("ARCHITECTURE.md");
    let (code_map, code_map_at) = section(&architecture, "## Code map");
    let named: BTreeMap<String, usize> = Regex::new(r"`(src/[^`\s]*)`")
        .expect("regex")
        .captures_iter(code_map)
        .map(|c| {
            let m = c.get(1).expect("group");
            (m.as_str().to_owned(), code_map_at + m.start())
        })
        .collect();

    let mut expected = BTreeSet::new();
    fn folders(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).expect("src folder") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let child = format!("{rel}{name}");
            if path.is_dir() {
                out.insert(format!("{child}/"));
                folders(&path, &format!("{child}/"), out);
            } else if rel == "src/" && name.ends_with(".rs") {
                out.insert(child);
            }
        }
    }
    folders(&root().join("src"), "src/", &mut expected);

    let mut offences = Vec::new();
    for path in &expected {
        if !named.contains_key(path) {
            offences.push(format!(
                "{}: the code map does not name `{path}`",
                architecture.at(code_map_at)
            ));
        }
    }
    for (path, at) in &named {
        if !root().join(path.trim_end_matches('/')).exists() {
            offences.push(format!(
                "{}: the code map names `{path}`, which does not exist",
                architecture.at(*at)
            ));
        }
    }
    report(
        "ARCHITECTURE.md's code map names every folder of src/ (as `src/x/`) \
         and every top-level module file (as `src/x.rs`), and nothing that is \
         gone.",
        &offences,
    );
}

// ---------------------------------------------------------------------------
// Settings: src/config/ and docs/reference.md agree
// ---------------------------------------------------------------------------

/// The names of each setting, from the one table of src/config/setting.rs:
/// variant → (flag without `--`, environment variable).
fn setting_names(setting: &SourceFile) -> BTreeMap<String, (String, Option<String>)> {
    // rustfmt may wrap a long arm in braces and break the tuple over lines.
    let row = Regex::new(
        r#"Setting::(\w+)\s*=>\s*\{?\s*\(\s*"([^"]+)",\s*(?:Some\("([^"]+)"\)|None),?\s*\)"#,
    )
    .expect("regex");
    let names: BTreeMap<String, (String, Option<String>)> = row
        .captures_iter(&setting.text)
        .map(|c| {
            (
                c[1].to_owned(),
                (c[2].to_owned(), c.get(3).map(|e| e.as_str().to_owned())),
            )
        })
        .collect();
    let arms = Regex::new(r"Setting::\w+\s*=>").expect("regex");
    assert_eq!(
        names.len(),
        arms.find_iter(&setting.text).count(),
        "tidy cannot read every arm of the names table in {}; update tests/tidy.rs",
        setting.rel
    );
    names
}

/// One flag of src/config/cli.rs.
#[derive(Debug)]
struct Flag {
    name: String,
    env: Option<String>,
    default: Option<String>,
    at: String,
}

fn config_flags(cli: &SourceFile, names: &BTreeMap<String, (String, Option<String>)>) -> Vec<Flag> {
    let arg = Regex::new(r"(?s)#\[arg\((.*?)\)\]\s*pub\s+(\w+)\s*:").expect("regex");
    let long = Regex::new(r"\blong\s*=\s*Setting::(\w+)\.long\(\)").expect("regex");
    let env = Regex::new(r"\benv\s*=\s*Setting::(\w+)\.env\(\)").expect("regex");
    let default = Regex::new(r#"\bdefault_value\s*=\s*"([^"]*)""#).expect("regex");
    let default_t = Regex::new(r"\bdefault_value_t\s*=\s*([^,]+?)\s*(?:,|$)").expect("regex");
    arg.captures_iter(&cli.text)
        .filter(|c| Regex::new(r"\blong\b").expect("regex").is_match(&c[1]))
        .map(|c| {
            let attributes = &c[1];
            let at = cli.at(c.get(0).expect("match").start());
            let named = |pattern: &Regex| {
                pattern.captures(attributes).map(|v| {
                    names.get(&v[1]).cloned().unwrap_or_else(|| {
                        panic!(
                            "tidy: {at}: `Setting::{}` is not in src/config/setting.rs's table",
                            &v[1]
                        )
                    })
                })
            };
            let name = named(&long).map_or_else(|| c[2].replace('_', "-"), |(flag, _)| flag);
            let default = default
                .captures(attributes)
                .map(|d| d[1].to_owned())
                .or_else(|| {
                    default_t.captures(attributes).and_then(|d| {
                        // Integer literals and products of them (`64 * 1024`).
                        d[1].split('*')
                            .map(|factor| factor.trim().replace('_', "").parse::<u64>().ok())
                            .try_fold(1u64, |acc, factor| factor.map(|f| acc * f))
                            .map(|n| n.to_string())
                    })
                });
            Flag {
                name: format!("--{name}"),
                env: named(&env).and_then(|(_, env)| env),
                default,
                at,
            }
        })
        .collect()
}

#[test]
fn settings_match_the_reference() {
    let cli = read("src/config/cli.rs");
    let names = setting_names(&read("src/config/setting.rs"));
    let reference = read("docs/reference.md");
    let (settings, settings_at) = section(&reference, "## Settings");
    let row = Regex::new(r"(?m)^\|\s*`(--[a-z0-9-]+)`\s*\|([^|]*)\|([^|]*)\|").expect("regex");
    // flag → (env cell, default cell, offset); a flag documented twice (serve
    // and mint-jwt) must agree, so the last row is as good as the first.
    let mut documented: BTreeMap<String, Vec<(String, String, usize)>> = BTreeMap::new();
    for c in row.captures_iter(settings) {
        documented.entry(c[1].to_owned()).or_default().push((
            c[2].trim().to_owned(),
            c[3].trim().to_owned(),
            settings_at + c.get(0).expect("match").start(),
        ));
    }
    let flags = config_flags(&cli, &names);
    assert!(
        flags.len() >= 20,
        "tidy found only {} flags in src/config/cli.rs: is the parser broken?",
        flags.len()
    );

    let mut offences = Vec::new();
    for flag in &flags {
        let Some(rows) = documented.get(&flag.name) else {
            offences.push(format!(
                "{}: `{}` has no row in docs/reference.md's Settings",
                flag.at, flag.name
            ));
            continue;
        };
        for (env_cell, default_cell, at) in rows {
            let documented_env = env_cell.trim_matches('`');
            let expected_env = flag.env.as_deref().unwrap_or("—");
            if documented_env != expected_env {
                offences.push(format!(
                    "{}: `{}` documents env `{documented_env}`, src/config says `{expected_env}`",
                    reference.at(*at),
                    flag.name
                ));
            }
            if let Some(default) = &flag.default
                && !default_cell.contains(&format!("`{default}`"))
            {
                offences.push(format!(
                    "{}: `{}` documents default {default_cell}, src/config/cli.rs says `{default}`",
                    reference.at(*at),
                    flag.name
                ));
            }
        }
    }
    let known: BTreeSet<&str> = flags.iter().map(|f| f.name.as_str()).collect();
    for (name, rows) in &documented {
        if !known.contains(name.as_str()) {
            offences.push(format!(
                "{}: `{name}` is documented but src/config/cli.rs has no such flag",
                reference.at(rows[0].2)
            ));
        }
    }
    report(
        "every flag of src/config/cli.rs has a row in docs/reference.md's Settings \
         with its environment variable and default, and every row is a real \
         flag.",
        &offences,
    );
}

#[test]
fn settings_are_spelled_in_one_place() {
    let names = setting_names(&read("src/config/setting.rs"));
    let literal = Regex::new(r#""(?:[^"\\\n]|\\.)*""#).expect("regex");
    let spellings: Vec<(String, Option<Regex>)> = names
        .values()
        .map(|(flag, env)| {
            let env = env
                .as_ref()
                .map(|env| Regex::new(&format!(r"\b{env}\b")).expect("regex"));
            (flag.clone(), env)
        })
        .collect();
    let mut offences = Vec::new();
    for file in files_under("src/", ".rs") {
        if file.rel == "src/config/setting.rs" {
            continue;
        }
        // Unit tests may spell a flag to say what they type.
        let code = without_comments(&file.text);
        let end = code.find("#[cfg(test)]").unwrap_or(code.len());
        for m in literal.find_iter(&code[..end]) {
            let text = m.as_str();
            for (flag, env) in &spellings {
                let named_flag =
                    text.contains(&format!("--{flag}")) && !text.contains(&format!("--{flag}-"));
                let named_env = env.as_ref().is_some_and(|env| env.is_match(text));
                if named_flag || named_env {
                    offences.push(format!("{}: {text} spells a setting", file.at(m.start())));
                }
            }
        }
    }
    report(
        "a flag or environment variable is spelled only in src/config/setting.rs; \
         name it through `Setting` (its Display is \"--flag (ENV)\") so no message \
         can misspell it.",
        &offences,
    );
}
