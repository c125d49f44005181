//! The maps a reader follows (the README's tables and architecture, the guide's pages, the
//! crate's own docs) name files and folders that exist: a file moved without its map fails here.

use std::path::Path;

/// Every `src/...` path written in backquotes in `text` (but `src/...` itself, which stands
/// for any).
fn src_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| {
            quoted.starts_with("src/")
                && !quoted.contains(char::is_whitespace)
                && !quoted.ends_with("...")
        })
        .map(|quoted| quoted.trim_end_matches(':').to_string())
        .collect()
}

#[test]
fn every_source_path_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md"), root.join("src/lib.rs")];
    for entry in std::fs::read_dir(root.join("src/guide")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut named = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for path in src_paths(&text) {
            named += 1;
            // Files an exercise asks the learner to make: the copy of the chapter, the
            // random strategy.
            if ["src/bin/exercise.rs", "src/backends/strategy/random.rs"].contains(&path.as_str()) {
                continue;
            }
            assert!(root.join(&path).exists(), "{} names {path}", doc.display());
        }
    }
    assert!(
        named > 20,
        "only {named} paths found: is the pattern still right?"
    );
}

#[test]
fn the_readme_architecture_names_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme.split("## Architecture").nth(1).unwrap();
    let picture = section.split("```").nth(1).unwrap();
    let mut files = Vec::new();
    for line in picture.lines() {
        // The names at the start of a line's columns: `proxy/`, `client.rs`, ...
        for word in line.split_whitespace() {
            let word = word.trim_end_matches([',', ':', ';']);
            let is_name = word.ends_with(".rs") || (word.ends_with('/') && word.len() > 1);
            if is_name
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || "_./".contains(c))
            {
                files.push(word.to_string());
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    let all = every_path(&root.join("src"));
    for name in files {
        let found = all.iter().any(|p| p.ends_with(name.trim_end_matches('/')));
        assert!(
            found,
            "the architecture names {name}, which is nowhere under src/"
        );
    }
}

/// Every file and folder under `dir`, as paths.
fn every_path(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(every_path(&path));
        }
        out.push(path);
    }
    out
}

/// The modules' own maps: a path such as `listener/cap.rs` or `src/demo/server.rs` written in
/// backquotes in a comment of any file under `src/` exists (under `src/`, or at the root for
/// `src/...` and `tests/...`).
#[test]
fn every_source_path_in_the_module_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut named = 0;
    for file in every_path(&root.join("src")) {
        if file.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let comments = text.lines().filter(|l| l.trim_start().starts_with("//"));
        for path in comments.flat_map(relative_paths) {
            named += 1;
            let under = if path.starts_with("src/") || path.starts_with("tests/") {
                root.join(&path)
            } else {
                root.join("src").join(&path)
            };
            if path == "src/bin/exercise.rs" || path.ends_with("strategy/random.rs") {
                continue; // made by the learner in an exercise
            }
            assert!(under.exists(), "{} names {path}", file.display());
        }
    }
    assert!(
        named > 10,
        "only {named} paths found: is the pattern still right?"
    );
}

/// Every `folder/file.ext` written in backquotes in `line` (a source file's path, not a URL
/// or an absolute path).
fn relative_paths(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| {
            quoted.contains('/')
                && quoted.starts_with(|c: char| c.is_ascii_lowercase())
                && [".rs", ".js", ".css", ".md"]
                    .iter()
                    .any(|e| quoted.ends_with(e))
                && quoted
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./".contains(c))
        })
        .map(str::to_string)
        .collect()
}
