//! The floor plan, checked: `web/` stands under every area and imports none,
//! `auth/` knows no HTTP, no import circle runs through either, and the staff and
//! API handlers hold no SQL of their own (they call the areas' stores). Read from
//! the source itself, so a change that breaks the plan fails here with the file
//! and the import that did it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What `web/` may stand on: the layers below the areas.
const UNDER_WEB: &[&str] = &["web", "auth", "db", "storage", "address", "config", "format"];
/// What `auth/` may stand on.
const UNDER_AUTH: &[&str] = &["auth", "db", "address", "config"];
/// Handlers over the areas' stores: no SQL here.
const HANDLERS_ONLY: &[&str] = &["src/staff", "src/api"];

struct Source {
    /// `src/web/extract.rs` is `["web", "extract"]`; `src/web/mod.rs` is `["web"]`.
    module: Vec<String>,
    text: String,
}

fn sources(dir: &Path, out: &mut BTreeMap<PathBuf, Source>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix("src").unwrap().with_extension("");
            let mut module: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            // Unit tests may reach anywhere; the plan is about the code that ships.
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            out.insert(path, Source { module, text });
        }
    }
}

/// Every `crate::a::b…` path a file names, `use crate::{a, b::{c, d}}` groups included.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top(&group[..end]) {
                paths.push(item.split("::").map(|s| s.trim().to_owned()).take_while(|s| is_ident(s)).collect());
            }
        } else {
            let path: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            paths.push(path.split("::").map(str::to_owned).take_while(|s| is_ident(s)).collect());
        }
    }
    paths
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

/// `a, b::{c, d}, e` → `a`, `b`, `e` (the module each item is in, one level deep is enough here).
fn split_top(s: &str) -> Vec<String> {
    let (mut items, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(std::mem::take(&mut current)),
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    items.push(current);
    items.into_iter().map(|i| i.trim().to_owned()).filter(|i| !i.is_empty()).collect()
}

/// The file-level import graph: file → the files it names.
fn graph(files: &BTreeMap<PathBuf, Source>) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let by_module: BTreeMap<&[String], &PathBuf> = files.iter().map(|(p, s)| (s.module.as_slice(), p)).collect();
    files
        .iter()
        .map(|(path, source)| {
            let targets = crate_paths(&source.text)
                .into_iter()
                .filter_map(|named| {
                    // The longest prefix of the path that is a file of the crate.
                    (1..=named.len()).rev().find_map(|n| by_module.get(&named[..n]).map(|p| (*p).clone()))
                })
                .filter(|target| target != path)
                .collect();
            (path.clone(), targets)
        })
        .collect()
}

/// Strongly connected components with more than one file: the import circles.
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<BTreeSet<PathBuf>> {
    let reach = |from: &PathBuf| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(next) = todo.pop() {
            for t in graph.get(&next).into_iter().flatten() {
                if seen.insert(t.clone()) {
                    todo.push(t.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&PathBuf, BTreeSet<PathBuf>> = graph.keys().map(|k| (k, reach(k))).collect();
    let mut found: Vec<BTreeSet<PathBuf>> = Vec::new();
    for (file, reached) in &reachable {
        if !reached.contains(*file) || found.iter().any(|c| c.contains(*file)) {
            continue;
        }
        let circle: BTreeSet<PathBuf> =
            reached.iter().filter(|other| reachable.get(other).is_some_and(|r| r.contains(*file))).cloned().collect();
        found.push(circle);
    }
    found
}

fn load() -> BTreeMap<PathBuf, Source> {
    let mut files = BTreeMap::new();
    sources(Path::new("src"), &mut files);
    assert!(files.len() > 50, "run from the repository root: found {} files", files.len());
    files
}

fn top(files: &BTreeMap<PathBuf, Source>, path: &Path) -> String {
    files[path].module.first().cloned().unwrap_or_default()
}

#[test]
fn no_import_circle_and_each_layer_imports_only_what_is_under_it() {
    let files = load();
    let graph = graph(&files);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    let circles = circles(&graph);
    println!("import graph: {} files, {edges} imports, {} circles", files.len(), circles.len());
    for circle in &circles {
        println!("circle of {} files: {circle:?}", circle.len());
    }
    let through = |layer: &str| circles.iter().filter(|c| c.iter().any(|f| top(&files, f) == layer)).count();
    assert_eq!(through("web"), 0, "an import circle runs through web/: {circles:?}");
    assert_eq!(through("auth"), 0, "an import circle runs through auth/: {circles:?}");

    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        let allowed = match top(&files, from).as_str() {
            "web" => UNDER_WEB,
            "auth" => UNDER_AUTH,
            _ => continue,
        };
        for target in targets {
            if !allowed.contains(&top(&files, target).as_str()) {
                wrong.push(format!("{} imports {}", from.display(), target.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "imports running back up from the floor:\n{}", wrong.join("\n"));
    assert!(
        files
            .iter()
            .filter(|(_, s)| s.module.first().is_some_and(|m| m == "auth"))
            .all(|(_, s)| !s.text.contains("actix_web")),
        "auth/ is sessions, passwords, throttling and tokens: no HTTP"
    );
}

#[test]
fn staff_and_api_handlers_call_the_areas_stores_and_hold_no_sql() {
    let files = load();
    let sql_markers = [
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE ",
        "\"WITH ",
        ".query_one(",
        ".query_opt(",
        ".execute(",
        ".batch_execute(",
    ];
    // `.query(` with an argument: a URL's `filters.query()` is not SQL.
    let runs_sql = |line: &str| {
        sql_markers.iter().any(|m| line.contains(m))
            || line.match_indices(".query(").any(|(at, m)| !line[at + m.len()..].starts_with(')'))
    };
    let mut found = Vec::new();
    for (path, source) in &files {
        if !HANDLERS_ONLY.iter().any(|dir| path.starts_with(dir)) {
            continue;
        }
        for (n, line) in source.text.lines().enumerate() {
            if runs_sql(line) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside its area's store:\n{}", found.join("\n"));
}

#[test]
fn rows_are_read_with_try_get_so_a_schema_drift_is_an_error_not_a_panic() {
    let files = load();
    let mut found = Vec::new();
    for (path, source) in &files {
        for (n, line) in source.text.lines().enumerate() {
            // `Row::get` by column name or index, or with the row's turbofish; headers and maps are read with `.get(header)`.
            let by_name = line.contains(".get(\"") && !line.contains("headers().get(");
            let by_index = ["row.get(0)", "r.get(0)", ".get::<_,"].iter().any(|m| line.contains(m));
            if by_name || by_index {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "rows read with a panicking get:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_circles_and_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::{accounts, web::{AppError, Shell}, db::Scope};"),
        vec![vec!["accounts".to_owned()], vec!["web".to_owned()], vec!["db".to_owned(), "Scope".to_owned()]]
    );
    let a = PathBuf::from("src/a.rs");
    let b = PathBuf::from("src/b.rs");
    let c = PathBuf::from("src/c.rs");
    let graph = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
        (c.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(circles(&graph), vec![BTreeSet::from([a, b])]);
}
