//! The module import graph of a crate's source, read with `syn`: which file uses which, so a
//! test can refuse import circles between files and imports a layer must not make
//! (docs/architecture.md, "Layout").
//!
//! A node of the graph is a source file (`src/a/b.rs` or `src/a/b/mod.rs` is module `a::b`);
//! an inline `mod x { .. }` belongs to its file. An edge `f -> g` means a path in `f` (a `use`
//! or a path in code) names an item of module `g`. Test code is left out: items under
//! `#[cfg(test)]` and files declared only under it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module path inside one crate, e.g. `["storage", "blocklog"]`; the crate root is empty.
pub type ModPath = Vec<String>;

/// The files of one crate and the edges between them.
#[derive(Debug, Default)]
pub struct Graph {
    /// Module path of every non-test source file, with the file.
    pub files: BTreeMap<ModPath, PathBuf>,
    /// `from -> to` for every module a file names, itself excluded.
    pub edges: BTreeMap<ModPath, BTreeSet<ModPath>>,
    /// First path segment of every external path a module names (`tokio`, `libp2p`, ...).
    pub external: BTreeMap<ModPath, BTreeSet<String>>,
    /// Names each module brings in with `use`, to the absolute path they stand for: a path
    /// through an import or a re-export names the module that defines the item.
    aliases: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
}

/// Reads every non-test file reachable from `src/lib.rs` or `src/main.rs` of `crate_dir`.
///
/// # Panics
/// When a file cannot be read or parsed: the test that calls it should fail loudly.
#[must_use]
pub fn graph(crate_dir: &Path) -> Graph {
    let src = crate_dir.join("src");
    let root = if src.join("lib.rs").exists() { src.join("lib.rs") } else { src.join("main.rs") };
    let mut graph = Graph::default();
    let mut pending = vec![(Vec::new(), root)];
    while let Some((module, file)) = pending.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let ast = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("cannot parse {}: {e}", file.display()));
        let mut scan =
            Scan { module: module.clone(), children: BTreeSet::new(), ..Scan::default() };
        for item in &ast.items {
            if let syn::Item::Mod(m) = item {
                if m.content.is_none() && !is_test_only(&m.attrs) {
                    scan.children.insert(m.ident.to_string());
                }
            }
        }
        scan.visit_file(&ast);
        for child in &scan.children {
            let mut path = module.clone();
            path.push(child.clone());
            pending.push((path, child_file(&file, child)));
        }
        graph.external.insert(module.clone(), scan.external);
        graph.edges.insert(module.clone(), scan.named);
        graph.aliases.insert(module.clone(), scan.aliases);
        graph.files.insert(module, file);
    }
    resolve(&mut graph);
    graph
}

/// The file that holds module `child` declared in `parent_file`.
fn child_file(parent_file: &Path, child: &str) -> PathBuf {
    let name = parent_file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let dir = if matches!(name, "lib.rs" | "main.rs" | "mod.rs") {
        parent_file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        parent_file.with_extension("")
    };
    let flat = dir.join(format!("{child}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(child).join("mod.rs")
    }
}

/// Turns the raw paths each file names into edges between known module files: a path names
/// the longest module prefix it starts with.
fn resolve(graph: &mut Graph) {
    let edges = std::mem::take(&mut graph.edges);
    for (from, named) in edges {
        let targets: BTreeSet<ModPath> = named
            .iter()
            .filter_map(|path| defining_module(graph, path.clone()))
            .filter(|target| *target != from)
            .collect();
        graph.edges.insert(from, targets);
    }
}

/// The module file that defines what `path` names, following `use` aliases (a bounded number
/// of times: aliases may not form a loop in code that compiles, but a bound costs nothing).
fn defining_module(graph: &Graph, mut path: ModPath) -> Option<ModPath> {
    for _ in 0..16 {
        let n = (0..=path.len()).rev().find(|n| graph.files.contains_key(&path[..*n]))?;
        let module = path[..n].to_vec();
        let alias = path.get(n).and_then(|name| graph.aliases.get(&module)?.get(name));
        match alias {
            Some(target) if *target != path[..=n] => {
                let mut next = target.clone();
                next.extend(path[n + 1..].iter().cloned());
                path = next;
            }
            _ => return Some(module),
        }
    }
    None
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test")
    })
}

/// Collects the module paths one file names, made absolute.
#[derive(Default)]
struct Scan {
    module: ModPath,
    /// Submodules declared in this file (a bare `child::x` names one).
    children: BTreeSet<String>,
    /// Absolute paths named, before they are cut to known modules.
    named: BTreeSet<ModPath>,
    aliases: BTreeMap<String, ModPath>,
    external: BTreeSet<String>,
}

impl Scan {
    /// Records the module `segments` names, made absolute from this file's module, or the
    /// external crate it starts with.
    fn name(&mut self, segments: &[String]) {
        match self.absolute(segments) {
            Some(path) => {
                self.named.insert(path);
            }
            None if segments.len() > 1 => {
                self.external.insert(segments[0].clone());
            }
            None => {}
        }
    }

    /// `segments` as a path from the crate root, or `None` when it starts outside the crate.
    fn absolute(&self, segments: &[String]) -> Option<ModPath> {
        let first = segments.first()?;
        let (mut path, rest) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (self.module.clone(), &segments[1..]),
            "super" => {
                let mut p = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    p.pop();
                    rest = &rest[1..];
                }
                (p, rest)
            }
            child if self.children.contains(child) => (self.module.clone(), segments),
            alias if self.aliases.contains_key(alias) => {
                (self.aliases[alias].clone(), &segments[1..])
            }
            _ => return None,
        };
        path.extend(rest.iter().cloned());
        Some(path)
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident, &n.ident),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident, &r.rename),
            syn::UseTree::Glob(_) => {
                let path = prefix.clone();
                self.name(&path);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], ident: &syn::Ident, alias: &syn::Ident) {
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        match self.absolute(&path) {
            Some(absolute) => {
                let alias = if alias == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    alias.to_string()
                };
                self.aliases.insert(alias, absolute.clone());
                self.named.insert(absolute);
            }
            // `use tokio;` and `use tokio::sync::mpsc;` name an external crate.
            None => {
                self.external.insert(path[0].clone());
            }
        }
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if item_attrs(item).is_some_and(is_test_only) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            self.name(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro bodies (`tokio::select!`, `format!`) are tokens, not syntax; the
        // macro's own path still counts.
        self.visit_path(&mac.path);
    }
}

fn item_attrs(item: &syn::Item) -> Option<&[syn::Attribute]> {
    Some(match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        _ => return None,
    })
}

/// Every import circle between files: the strongly connected components of more than one
/// file, each as its module paths joined with `::`.
#[must_use]
pub fn circles(graph: &Graph) -> Vec<Vec<String>> {
    let nodes: Vec<&ModPath> = graph.files.keys().collect();
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reaches[n].contains(*n) {
            continue;
        }
        let component: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| {
                done.insert((*m).clone());
                if m.is_empty() {
                    "crate".to_string()
                } else {
                    m.join("::")
                }
            })
            .collect();
        out.push(component);
    }
    out
}

/// The edges inside one circle, `from -> to` per line, for a failure message that says which
/// import to move.
#[must_use]
pub fn edges_within(graph: &Graph, circle: &[String]) -> Vec<String> {
    let name = |m: &ModPath| if m.is_empty() { "crate".to_string() } else { m.join("::") };
    let mut out = Vec::new();
    for (from, targets) in &graph.edges {
        for to in targets {
            if circle.contains(&name(from)) && circle.contains(&name(to)) {
                out.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    out
}

/// Every module `start` reaches through its imports, itself included, each with the path of
/// imports that reaches it (for a failure message).
#[must_use]
pub fn reachable(graph: &Graph, start: &ModPath) -> BTreeMap<ModPath, Vec<String>> {
    let name = |m: &ModPath| if m.is_empty() { "crate".to_string() } else { m.join("::") };
    let mut seen = BTreeMap::from([(start.clone(), vec![name(start)])]);
    let mut stack = vec![start.clone()];
    while let Some(module) = stack.pop() {
        let path = seen[&module].clone();
        for next in graph.edges.get(&module).into_iter().flatten() {
            if !seen.contains_key(next) {
                let mut longer = path.clone();
                longer.push(name(next));
                seen.insert(next.clone(), longer);
                stack.push(next.clone());
            }
        }
    }
    seen
}

/// Every non-test function of the crate at `crate_dir` longer than `max_lines` lines (its
/// signature and body), as `file:line name (lines)`.
///
/// # Panics
/// When a file cannot be read or parsed.
#[must_use]
pub fn long_functions(crate_dir: &Path, max_lines: usize) -> Vec<String> {
    let graph = graph(crate_dir);
    let mut out = Vec::new();
    for file in graph.files.values() {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut lengths = Lengths { max_lines, found: Vec::new() };
        lengths.visit_file(&ast);
        for (line, name, len) in lengths.found {
            out.push(format!("{}:{line} {name} ({len} lines)", file.display()));
        }
    }
    out
}

struct Lengths {
    max_lines: usize,
    found: Vec<(usize, String, usize)>,
}

impl Lengths {
    fn check(&mut self, name: &syn::Ident, span: proc_macro2::Span) {
        let (start, end) = (span.start().line, span.end().line);
        let len = end.saturating_sub(start) + 1;
        if len > self.max_lines {
            self.found.push((start, name.to_string(), len));
        }
    }
}

impl<'ast> Visit<'ast> for Lengths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !item_attrs(item).is_some_and(is_test_only) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let span = syn::spanned::Spanned::span(f);
        self.check(&f.sig.ident, span);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            let span = syn::spanned::Spanned::span(f);
            self.check(&f.sig.ident, span);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}
