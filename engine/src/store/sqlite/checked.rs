//! The embedded dialect's statements are strings (sqlx checks SQL at compile
//! time against one database only, and that is PostgreSQL), so they are
//! checked here instead: every statement written in this directory is
//! found in the source, its column lists filled in as the code fills them,
//! and prepared against a freshly migrated embedded store. SQLite's prepare
//! resolves every table, column and function, so a misspelt name fails
//! `cargo test` without the path that runs it.

use std::path::Path;

/// The string literals of a Rust source file, unescaped as the compiler
/// would (line continuations, `\"`, `\\`, `\n`); raw strings are not used
/// in this directory.
fn literals(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A comment runs to the end of its line, quotes and all.
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            // A character literal, `'"'` among them.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\"'") || rest.starts_with("\\\"'") {
                    for _ in 0..rest.find('\'').unwrap_or(0) + 1 {
                        chars.next();
                    }
                }
            }
            '"' => {
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('\n') => {
                                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                                    chars.next();
                                }
                            }
                            Some('n') => text.push('\n'),
                            Some('t') => text.push('\t'),
                            Some(other) => text.push(other),
                            None => break,
                        },
                        other => text.push(other),
                    }
                }
                found.push(text);
            }
            _ => {}
        }
    }
    found
}

/// A statement as the code sends it: `format!` placeholders filled with
/// the column lists they name.
fn filled(text: &str) -> String {
    let parts = [
        ("{TASK_COLUMNS_WITH_ARTIFACTS}", super::TASK_COLUMNS_WITH_ARTIFACTS),
        ("{TASK_COLUMNS}", super::TASK_COLUMNS),
        ("{AGENT_COLUMNS}", super::agent::AGENT_COLUMNS),
        ("{JOB_COLUMNS}", super::job::JOB_COLUMNS),
        ("{CLAIMED}", super::job::CLAIMED),
        ("{FILTERS}", super::list::FILTERS),
        ("{TERMINAL}", super::console::TERMINAL),
        ("{OPEN}", super::console::OPEN),
        ("{columns}", super::TASK_COLUMNS_WITH_ARTIFACTS),
    ];
    parts.iter().fold(text.to_owned(), |sql, (placeholder, value)| sql.replace(placeholder, value))
}

fn is_statement(text: &str) -> bool {
    let head = text.trim_start().to_ascii_uppercase();
    ["SELECT ", "INSERT ", "UPDATE ", "DELETE ", "WITH "].iter().any(|verb| head.starts_with(verb))
}

#[tokio::test]
async fn every_embedded_statement_prepares_against_the_embedded_schema() {
    let dir = std::env::temp_dir().join(format!("switchyard-checked-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", dir.join("check.db").display());
    let lite = super::Lite::open(&url, 1, false).expect("open");
    lite.migrate().await.expect("migrate");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/sqlite");
    let mut statements = Vec::new();
    for entry in std::fs::read_dir(&root).expect("dialect dir") {
        let path = entry.expect("entry").path();
        let source = std::fs::read_to_string(&path).expect("read");
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if file == "checked.rs" {
            continue;
        }
        statements
            .extend(literals(&source).into_iter().filter(|l| is_statement(l)).map(|l| (file.clone(), filled(&l))));
    }

    let mut conn = lite.maintenance.acquire().await.expect("connection");
    let mut refused = Vec::new();
    for (file, sql) in &statements {
        assert!(!sql.contains('{'), "{file}: a placeholder this check does not know: {sql}");
        let text = sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql.clone()));
        if let Err(e) = sqlx::Executor::prepare(&mut *conn, text).await {
            refused.push(format!("{file}: {e}\n  {sql}"));
        }
    }
    drop(conn);
    lite.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // The extraction sees what it claims to: the dialect has well over a
    // hundred statements.
    assert!(statements.len() >= 80, "only {} statements found", statements.len());
    assert!(refused.is_empty(), "statements SQLite refuses:\n{}", refused.join("\n"));
}

#[test]
fn literals_are_read_as_the_compiler_reads_them() {
    // (This file's own literals are examples, and are not checked.)
    let source = "let a = \"SELECT 1 \\\n         FROM t\"; // \"not this\"\nlet q = '\"'; let b = \"say \\\"hi\\\"\";";
    assert_eq!(literals(source), vec!["SELECT 1 FROM t".to_owned(), "say \"hi\"".to_owned()]);
}
