//! No import cycle between the files of `actors/src`: a file may only
//! depend on files that do not depend back on it, directly or through
//! others. The exception is a directory's family — its `mod.rs` and the
//! files directly in it: the parent re-exports and calls its children, the
//! children use what the parent declares. A cycle that stays in one family
//! and goes through its `mod.rs` is allowed; any other cycle (across
//! families, or between siblings alone) is reported with the path behind
//! each step.
//!
//! A file depends on another when it names an item of it by path: in a
//! `use` (nested groups, `self`, renames and globs included), or anywhere
//! in its code (types, expressions, macro arguments), through `crate::`,
//! `super::`, `self::`, a child module, or a name a `use` brought in. A
//! path through a re-export (`pub use`) or an import of another module
//! counts for the file that defines the item. Code under `#[cfg(test)]`
//! does not count: unit tests may reach anywhere. Files are read with
//! `syn` (a real Rust parser), so comments and strings never look like
//! paths.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

#[test]
fn actors_src_has_no_import_cycle_between_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::of_dir(&src);
    assert!(
        graph.files.len() > 10,
        "only {} files found in {}",
        graph.files.len(),
        src.display()
    );
    let report = graph.cycle_report();
    assert!(report.is_empty(), "import cycles in actors/src:\n{report}");
}

/// A module path: `["cloud", "dispatch"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// The dependency graph of one crate's files.
struct Graph {
    /// Module path → file (`cloud/dispatch.rs`).
    files: BTreeMap<ModPath, String>,
    /// Module (file or inline) → the names its `use` items bring in → the
    /// absolute path each stands for.
    imports: HashMap<ModPath, HashMap<String, ModPath>>,
    /// from file → to file → the first path that made the edge, with its
    /// line.
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    /// Reads every `.rs` file under `src` (a crate's `src/` directory).
    fn of_dir(src: &Path) -> Graph {
        let mut sources = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path
                        .strip_prefix(src)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    let text = std::fs::read_to_string(&path).unwrap();
                    sources.push((rel, text));
                }
            }
        }
        Graph::of_sources(&sources)
    }

    /// Builds the graph of `(path relative to src/, source)` pairs.
    fn of_sources(sources: &[(String, String)]) -> Graph {
        let files: BTreeMap<ModPath, String> = sources
            .iter()
            .map(|(rel, _)| (module_path(rel), rel.clone()))
            .collect();
        let known: BTreeSet<ModPath> = files.keys().cloned().collect();
        let mut graph = Graph {
            files,
            imports: HashMap::new(),
            edges: BTreeMap::new(),
        };
        // Every file's paths and imports first: a path may go through an
        // import of a file read later.
        let mut found = Vec::new();
        for (rel, text) in sources {
            let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let mut paths = Vec::new();
            Scope::walk(
                &file.items,
                &module_path(rel),
                &known,
                &mut graph.imports,
                &mut paths,
            );
            found.push((rel, paths));
        }
        for (rel, paths) in found {
            for (path, line, shown) in paths {
                if let Some(to) = graph.owner(&path) {
                    graph.add_edge(rel, to, &format!("{shown} (line {line})"));
                }
            }
        }
        graph
    }

    /// The file that defines what the absolute `path` names, following
    /// re-exports and imports of the modules on the way.
    fn owner(&self, path: &[String]) -> Option<String> {
        let mut path = path.to_vec();
        // Bounded: glob re-exports or odd aliases must not loop forever.
        for _ in 0..32 {
            let through = (0..path.len()).rev().find_map(|k| {
                let target = self.imports.get(&path[..k])?.get(&path[k])?;
                let mut next = target.clone();
                next.extend(path[k + 1..].iter().cloned());
                (next != path).then_some(next)
            });
            match through {
                Some(next) => path = next,
                None => break,
            }
        }
        (0..=path.len())
            .rev()
            .find_map(|n| self.files.get(&path[..n]))
            .cloned()
    }

    fn add_edge(&mut self, from: &str, to: String, shown: &str) {
        if to == from {
            return;
        }
        self.edges
            .entry(from.to_owned())
            .or_default()
            .entry(to)
            .or_insert_with(|| shown.to_owned());
    }

    fn targets<'a>(&'a self, from: &str) -> impl Iterator<Item = &'a String> {
        self.edges.get(from).into_iter().flat_map(|m| m.keys())
    }

    /// Every forbidden cycle (none: empty), as the files that depend on each
    /// other and one cycle through them, each step with the path that makes
    /// it.
    fn cycle_report(&self) -> String {
        let mut out = String::new();
        for component in self.components(|_, _| true) {
            let inside: BTreeSet<&String> = component.iter().collect();
            // Every edge inside a strongly connected component is on a
            // cycle: one that leaves a family is forbidden.
            let across = component.iter().find_map(|from| {
                self.targets(from)
                    .find(|to| inside.contains(to) && !same_family(from, to))
                    .map(|to| (from.clone(), to.clone()))
            });
            let mut bad = Vec::new();
            match across {
                Some((from, to)) => bad.push((component.clone(), from, to)),
                // Within families, only siblings depending on each other
                // directly (not through their mod.rs) are forbidden.
                None => {
                    for siblings in self.components(are_siblings) {
                        if siblings.iter().all(|f| inside.contains(f)) {
                            let from = siblings[0].clone();
                            let to = self
                                .targets(&from)
                                .find(|t| siblings.contains(t) && are_siblings(&from, t))
                                .cloned()
                                .expect("a member of a component has an edge inside it");
                            bad.push((siblings, from, to));
                        }
                    }
                }
            }
            for (files, from, to) in bad {
                let cycle = self.shortest_cycle(&files, &from, &to);
                let _ = writeln!(
                    out,
                    "{} files depend on each other ({}); one cycle:",
                    files.len(),
                    files.join(", ")
                );
                for pair in cycle.windows(2) {
                    let why = &self.edges[&pair[0]][&pair[1]];
                    let _ = writeln!(out, "  {} → {}   ({why})", pair[0], pair[1]);
                }
            }
        }
        out
    }

    /// The strongly connected components (Tarjan's algorithm) with more
    /// than one file, of the edges `keep` accepts; each sorted.
    fn components(&self, keep: impl Fn(&str, &str) -> bool) -> Vec<Vec<String>> {
        struct State<'a> {
            index: HashMap<&'a str, usize>,
            low: HashMap<&'a str, usize>,
            on_stack: BTreeSet<&'a str>,
            stack: Vec<&'a str>,
            out: Vec<Vec<String>>,
        }
        fn visit<'a>(
            g: &'a Graph,
            keep: &dyn Fn(&str, &str) -> bool,
            v: &'a str,
            s: &mut State<'a>,
        ) {
            let i = s.index.len();
            s.index.insert(v, i);
            s.low.insert(v, i);
            s.stack.push(v);
            s.on_stack.insert(v);
            for w in g.targets(v).filter(|w| keep(v, w)) {
                if !s.index.contains_key(w.as_str()) {
                    visit(g, keep, w, s);
                    let low = s.low[w.as_str()].min(s.low[v]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w.as_str()) {
                    let low = s.index[w.as_str()].min(s.low[v]);
                    s.low.insert(v, low);
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    s.out.push(component);
                }
            }
        }
        let mut s = State {
            index: HashMap::new(),
            low: HashMap::new(),
            on_stack: BTreeSet::new(),
            stack: Vec::new(),
            out: Vec::new(),
        };
        for v in self.files.values() {
            if !s.index.contains_key(v.as_str()) {
                visit(self, &keep, v, &mut s);
            }
        }
        s.out.sort();
        s.out
    }

    /// A shortest cycle through the edge `from` → `to` among `files`, as a
    /// list of files starting and ending with `from`.
    fn shortest_cycle(&self, files: &[String], from: &String, to: &String) -> Vec<String> {
        let inside: BTreeSet<&String> = files.iter().collect();
        // Breadth first from `to` back to `from`.
        let mut came_from: HashMap<&String, &String> = HashMap::from([(to, from)]);
        let mut queue = VecDeque::from([to]);
        while let Some(v) = queue.pop_front() {
            if v == from {
                let mut cycle = vec![from.clone()];
                let mut at = came_from[from];
                while at != from {
                    cycle.push(at.clone());
                    at = came_from[at];
                }
                cycle.push(from.clone());
                cycle.reverse();
                return cycle;
            }
            for w in self.targets(v) {
                if inside.contains(w) && !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        unreachable!("every edge inside a strongly connected component is on a cycle")
    }
}

/// `lib.rs` → `[]`, `a/mod.rs` → `["a"]`, `a/b.rs` → `["a", "b"]`.
fn module_path(rel: &str) -> ModPath {
    let mut parts: ModPath = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Whether `parent`'s module declares `child`'s module directly.
fn is_parent_of(parent: &str, child: &str) -> bool {
    let (p, c) = (module_path(parent), module_path(child));
    c.len() == p.len() + 1 && c.starts_with(&p)
}

/// Whether both files are modules of the same parent.
fn are_siblings(a: &str, b: &str) -> bool {
    let (a, b) = (module_path(a), module_path(b));
    !a.is_empty() && !b.is_empty() && a.len() == b.len() && a[..a.len() - 1] == b[..b.len() - 1]
}

/// Whether the two files are in one family: a `mod.rs` (or `lib.rs`) and
/// the modules it declares, or two of those.
fn same_family(a: &str, b: &str) -> bool {
    is_parent_of(a, b) || is_parent_of(b, a) || are_siblings(a, b)
}

/// One module's scope while walking a file: where it is and what its `use`
/// items brought in.
struct Scope<'a> {
    module: ModPath,
    /// Name brought in by a `use` → the absolute path it stands for.
    aliases: HashMap<String, ModPath>,
    known: &'a BTreeSet<ModPath>,
}

/// (absolute module path, line, the path as written)
type Found = Vec<(ModPath, usize, String)>;

impl<'a> Scope<'a> {
    /// Walks a module's items (recursing into inline modules); records the
    /// paths in `out` and the module's imports in `imports`.
    fn walk(
        items: &[syn::Item],
        module: &[String],
        known: &'a BTreeSet<ModPath>,
        imports: &mut HashMap<ModPath, HashMap<String, ModPath>>,
        out: &mut Found,
    ) {
        let mut scope = Scope {
            module: module.to_vec(),
            aliases: HashMap::new(),
            known,
        };
        let items: Vec<&syn::Item> = items.iter().filter(|i| !is_test_only(i)).collect();
        // `use` items first: later paths may start with what they import.
        for item in &items {
            if let syn::Item::Use(u) = item {
                scope.use_tree(&u.tree, &mut Vec::new(), out);
            }
        }
        imports.insert(scope.module.clone(), scope.aliases.clone());
        for item in &items {
            match item {
                syn::Item::Use(_) => {}
                syn::Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        let mut child = scope.module.clone();
                        child.push(m.ident.to_string());
                        Scope::walk(inner, &child, known, imports, out);
                    }
                }
                other => scope.tokens(other.to_token_stream(), out),
            }
        }
    }
    /// Records every path of a `use` tree (`prefix` holds the segments above
    /// this subtree) and the names it brings in.
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Found) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident, None, out),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident, Some(&r.rename), out),
            syn::UseTree::Glob(g) => {
                let line = g.star_token.spans[0].start().line;
                self.record(prefix, line, out);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(t, prefix, out);
                }
            }
        }
    }

    fn use_leaf(
        &mut self,
        prefix: &[String],
        ident: &syn::Ident,
        rename: Option<&syn::Ident>,
        out: &mut Found,
    ) {
        // `use a::{self}` names `a` itself.
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        let Some(abs) = self.resolve(&path) else {
            return;
        };
        let name = rename.or((ident != "self").then_some(ident));
        let name = match name {
            Some(n) => n.to_string(),
            None => match path.last() {
                Some(last) => last.clone(),
                None => return,
            },
        };
        if name != "_" {
            self.aliases.insert(name, abs.clone());
        }
        out.push((
            abs,
            ident.span().start().line,
            format!("use {}", path.join("::")),
        ));
    }

    /// Records `path` (as written) if it names something of this crate.
    fn record(&self, path: &[String], line: usize, out: &mut Found) {
        if let Some(abs) = self.resolve(path) {
            out.push((abs, line, path.join("::")));
        }
    }

    /// The absolute module path `path` names from this scope, if it is one
    /// of this crate's.
    fn resolve(&self, path: &[String]) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        let mut abs = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => {
                let mut m = self.module.clone();
                m.pop()?;
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    m.pop()?;
                    rest = &rest[1..];
                }
                m.extend(rest.iter().cloned());
                return Some(m);
            }
            name => {
                if let Some(a) = self.aliases.get(name) {
                    a.clone()
                } else {
                    let mut child = self.module.clone();
                    child.push(name.to_owned());
                    // A child module (from the file tree, or inline ones
                    // that share this file).
                    if !self.known.iter().any(|k| k.starts_with(&child)) {
                        return None;
                    }
                    child
                }
            }
        };
        abs.extend(rest.iter().cloned());
        Some(abs)
    }

    /// Scans code (any item but `use` and inline modules) for paths; `use`
    /// statements inside function bodies are parsed as `use` trees.
    fn tokens(&mut self, stream: TokenStream, out: &mut Found) {
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => {
                    self.tokens(g.stream(), out);
                    i += 1;
                }
                TokenTree::Ident(id) if id == "use" => {
                    let end = (i..tokens.len())
                        .find(|&j| matches!(&tokens[j], TokenTree::Punct(p) if p.as_char() == ';'))
                        .unwrap_or(tokens.len() - 1);
                    let stmt: TokenStream = tokens[i..=end].iter().cloned().collect();
                    if let Ok(u) = syn::parse2::<syn::ItemUse>(stmt) {
                        self.use_tree(&u.tree, &mut Vec::new(), out);
                    }
                    i = end + 1;
                }
                TokenTree::Ident(id) => {
                    // A path: ident (:: ident)*, not itself preceded by `::`.
                    let preceded = i >= 2 && is_colon(&tokens[i - 1]) && is_colon(&tokens[i - 2]);
                    let mut path = vec![id.to_string()];
                    let mut j = i + 1;
                    while j + 1 < tokens.len() && is_colon(&tokens[j]) && is_colon(&tokens[j + 1]) {
                        match tokens.get(j + 2) {
                            Some(TokenTree::Ident(next)) => {
                                path.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if !preceded && path.len() > 1 {
                        self.record(&path, id.span().start().line, out);
                    }
                    i = j.max(i + 1);
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
            }
        }
    }
}

fn is_colon(t: &TokenTree) -> bool {
    matches!(t, TokenTree::Punct(p) if p.as_char() == ':')
}

/// `#[cfg(test)]` (alone, not `cfg(not(test))` or `cfg(any(test, …))`).
fn is_test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(m) => &m.attrs,
        syn::Item::Use(u) => &u.attrs,
        syn::Item::Fn(f) => &f.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Struct(s) => &s.attrs,
        syn::Item::Enum(e) => &e.attrs,
        syn::Item::Const(c) => &c.attrs,
        syn::Item::Static(s) => &s.attrs,
        syn::Item::Trait(t) => &t.attrs,
        syn::Item::Type(t) => &t.attrs,
        syn::Item::Macro(m) => &m.attrs,
        _ => return false,
    };
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string() == "test")
    })
}

mod checker {
    //! The checker itself, on small crates written here.

    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
            .collect();
        Graph::of_sources(&sources)
    }

    fn deps(g: &Graph, from: &str) -> Vec<String> {
        g.edges
            .get(from)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    const TREE: &[&str] = &[
        "lib.rs",
        "api/mod.rs",
        "api/outbox.rs",
        "cloud/mod.rs",
        "cloud/dispatch.rs",
        "cloud/link.rs",
        "remote/mod.rs",
        "remote/terminal/mod.rs",
        "remote/terminal/pump.rs",
        "host/mod.rs",
        "host/fsutil.rs",
    ];

    /// The tree above with `text` as the source of `file` (others empty).
    fn with(file: &str, text: &str) -> Graph {
        let files: Vec<(&str, &str)> = TREE
            .iter()
            .map(|f| (*f, if *f == file { text } else { "" }))
            .collect();
        graph(&files)
    }

    #[test]
    fn nested_groups_self_and_renames_are_all_followed() {
        let g = with(
            "cloud/dispatch.rs",
            "use crate::{api::{self, outbox::Outbox as Out}, host::{fsutil::write, *}};\n\
             use crate::remote::{terminal::{pump}};",
        );
        assert_eq!(
            deps(&g, "cloud/dispatch.rs"),
            [
                "api/mod.rs",
                "api/outbox.rs",
                "host/fsutil.rs",
                "host/mod.rs",
                "remote/terminal/pump.rs"
            ]
        );
    }

    #[test]
    fn super_self_and_child_modules_resolve_from_the_files_module() {
        let g = with(
            "remote/terminal/pump.rs",
            "use super::super::Reply; use self::inner::X; fn f() { super::spawn(); }",
        );
        assert_eq!(
            deps(&g, "remote/terminal/pump.rs"),
            ["remote/mod.rs", "remote/terminal/mod.rs"]
        );
        // `mod terminal;` declares; the `use` lines depend.
        let g = with(
            "remote/mod.rs",
            "pub mod terminal; pub use terminal::Session; use self::terminal::pump::Pump;",
        );
        assert_eq!(
            deps(&g, "remote/mod.rs"),
            ["remote/terminal/mod.rs", "remote/terminal/pump.rs"]
        );
    }

    #[test]
    fn paths_in_code_macros_and_through_imported_modules_count() {
        let g = with(
            "host/fsutil.rs",
            "use crate::cloud;\n\
             fn f() -> crate::api::outbox::Outbox {\n\
                 tracing::info!(x = ?crate::remote::terminal::pump::X, \"y\");\n\
                 cloud::dispatch::send();\n\
                 use crate::cloud::{link};\n\
                 todo!()\n\
             }",
        );
        assert_eq!(
            deps(&g, "host/fsutil.rs"),
            [
                "api/outbox.rs",
                "cloud/dispatch.rs",
                "cloud/link.rs",
                "cloud/mod.rs",
                "remote/terminal/pump.rs"
            ]
        );
    }

    #[test]
    fn comments_strings_foreign_crates_and_test_code_do_not_count() {
        let g = with(
            "host/fsutil.rs",
            "// use crate::cloud::dispatch;\n\
             /* crate::api::outbox */\n\
             const S: &str = \"crate::remote::terminal::pump\";\n\
             use std::path::Path; use tokio::sync::mpsc;\n\
             fn f(_: &Path) { std::fs::read(\"x\").ok(); }\n\
             #[cfg(test)] mod tests { use crate::cloud::link; use super::*; }\n\
             #[cfg(test)] fn helper() { crate::remote::x(); }",
        );
        assert_eq!(deps(&g, "host/fsutil.rs"), Vec::<String>::new());
    }

    #[test]
    fn inline_modules_resolve_super_from_where_they_are() {
        let g = with(
            "cloud/link.rs",
            "mod frames { use super::super::dispatch::Inbound; pub(crate) use super::Link; }",
        );
        // `super::super` from cloud::link::frames is cloud; `super` is the
        // file itself.
        assert_eq!(deps(&g, "cloud/link.rs"), ["cloud/dispatch.rs"]);
    }

    #[test]
    fn a_cycle_is_reported_with_the_path_behind_each_edge() {
        let g = graph(&[
            ("lib.rs", "pub mod cloud; pub mod remote; pub mod host;"),
            ("cloud/mod.rs", "pub mod dispatch;"),
            ("cloud/dispatch.rs", "use crate::remote::Reply;"),
            (
                "remote/mod.rs",
                "pub fn f() { crate::host::metrics::read(); }",
            ),
            ("host/mod.rs", "pub mod metrics;"),
            (
                "host/metrics.rs",
                "use crate::cloud::dispatch::SendCommand;",
            ),
        ]);
        let report = g.cycle_report();
        assert_eq!(
            report,
            "3 files depend on each other (cloud/dispatch.rs, host/metrics.rs, remote/mod.rs); one cycle:\n\
             \x20 cloud/dispatch.rs → remote/mod.rs   (use crate::remote::Reply (line 1))\n\
             \x20 remote/mod.rs → host/metrics.rs   (crate::host::metrics::read (line 1))\n\
             \x20 host/metrics.rs → cloud/dispatch.rs   (use crate::cloud::dispatch::SendCommand (line 1))\n"
        );
        // Children using their parent while the parent re-exports and
        // calls them is fine, also with a sibling on the way; a path through
        // the crate root's re-export counts for the file that defines it.
        let g = graph(&[
            ("lib.rs", "pub mod status; pub use status::Status;"),
            (
                "status/mod.rs",
                "mod machine; mod table; pub use machine::next; fn f() { table::rows(); }",
            ),
            (
                "status/machine.rs",
                "use crate::Status as S; use super::table::Row;",
            ),
            ("status/table.rs", "use super::Status;"),
        ]);
        assert_eq!(
            deps(&g, "status/machine.rs"),
            ["status/mod.rs", "status/table.rs"]
        );
        assert_eq!(g.cycle_report(), "");
    }

    #[test]
    fn siblings_depending_on_each_other_directly_are_a_cycle() {
        let g = graph(&[
            ("lib.rs", "pub mod services; pub mod settings;"),
            ("settings.rs", "use crate::services::Options;"),
            (
                "services/mod.rs",
                "pub mod core; pub use core::Options; use crate::settings::Settings;",
            ),
            ("services/core.rs", "pub struct Options;"),
        ]);
        // settings.rs uses services/core.rs (through the re-export), which
        // is no sibling of it: that edge leaves the family.
        assert_eq!(
            g.cycle_report(),
            "",
            "no cycle: core.rs does not use settings.rs"
        );
        let g = graph(&[
            ("lib.rs", "pub mod services; pub mod settings;"),
            ("settings.rs", "use crate::services::Options;"),
            (
                "services/mod.rs",
                "pub struct Options; use crate::settings::Settings;",
            ),
        ]);
        assert_eq!(
            g.cycle_report(),
            "2 files depend on each other (services/mod.rs, settings.rs); one cycle:\n\
             \x20 services/mod.rs → settings.rs   (use crate::settings::Settings (line 1))\n\
             \x20 settings.rs → services/mod.rs   (use crate::services::Options (line 1))\n"
        );
    }

    #[test]
    fn a_cycle_through_a_parent_and_its_child_is_still_a_cycle() {
        // dispatch depends on remote, remote's child depends on dispatch:
        // cloud and remote depend on each other.
        let g = graph(&[
            ("lib.rs", "pub mod cloud; pub mod remote;"),
            ("cloud/mod.rs", "pub mod dispatch;"),
            ("cloud/dispatch.rs", "fn f() { crate::remote::handle(); }"),
            (
                "remote/mod.rs",
                "pub mod runtime; pub fn handle() { runtime::run(); }",
            ),
            (
                "remote/runtime.rs",
                "use super::Reply; use crate::cloud::dispatch::Outbox;",
            ),
        ]);
        assert_eq!(
            g.cycle_report(),
            "3 files depend on each other (cloud/dispatch.rs, remote/mod.rs, remote/runtime.rs); one cycle:\n\
             \x20 cloud/dispatch.rs → remote/mod.rs   (crate::remote::handle (line 1))\n\
             \x20 remote/mod.rs → remote/runtime.rs   (runtime::run (line 1))\n\
             \x20 remote/runtime.rs → cloud/dispatch.rs   (use crate::cloud::dispatch::Outbox (line 1))\n"
        );
    }
}
