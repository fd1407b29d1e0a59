//! The seam between the store's logic and its two dialects.
//!
//! A room of the store (`access`, `agent`, …) says what it reads and writes
//! by declaring its statements with [`statements!`]: a name, the arguments
//! and the result, once. Each dialect writes every one of them as a
//! function of the same name in its own room — `pg::access::key_insert`
//! and `sqlite::access::key_insert` — taking the connection first (the
//! PostgreSQL pool or transaction; the embedded store or its transaction).
//! The macro writes the one `match` on the driver, so the logic files hold
//! neither SQL nor a driver's name, and a statement one dialect lacks, or
//! takes other arguments in, does not compile.
//!
//! A statement is declared `db` (run on its own, outside any transaction
//! the caller holds: a read, or a one-statement write) or `tx` (run inside
//! the caller's transaction, begun by [`super::in_tx`]).

macro_rules! statements {
    (
        room $room:ident;
        $(
            $(#[$attr:meta])*
            $on:ident fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;
        )*
    ) => {
        $(
            $crate::store::seam::statements!(@one $room $on [$(#[$attr])*] $name [$($arg: $ty),*] $ret);
        )*
    };
    (@one $room:ident db [$(#[$attr:meta])*] $name:ident [$($arg:ident: $ty:ty),*] $ret:ty) => {
        impl $crate::store::Db {
            $(#[$attr])*
            #[allow(clippy::too_many_arguments)]
            pub(super) async fn $name(&self, $($arg: $ty),*) -> Result<$ret, $crate::error::StoreError> {
                match self {
                    $crate::store::Db::Pg(pool) => $crate::store::pg::$room::$name(pool, $($arg),*).await,
                    $crate::store::Db::Lite(lite) => $crate::store::sqlite::$room::$name(lite, $($arg),*).await,
                }
            }
        }
    };
    (@one $room:ident tx [$(#[$attr:meta])*] $name:ident [$($arg:ident: $ty:ty),*] $ret:ty) => {
        impl $crate::store::Tx {
            $(#[$attr])*
            #[allow(clippy::too_many_arguments)]
            pub(super) async fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, $crate::error::StoreError> {
                match self {
                    $crate::store::Tx::Pg(tx) => $crate::store::pg::$room::$name(tx, $($arg),*).await,
                    $crate::store::Tx::Lite(tx) => $crate::store::sqlite::$room::$name(tx, $($arg),*).await,
                }
            }
        }
    };
}
pub(crate) use statements;

#[cfg(test)]
mod tests {
    //! The layout holds: the rooms' logic speaks no SQL and names no
    //! driver, and no two rooms lean on each other.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// The logic files: every `.rs` under `store/` but the dialects and the
    /// seam's own plumbing (`mod.rs` builds the drivers; this file matches on them).
    fn logic_files() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("store dir") {
                let path = entry.expect("entry").path();
                let relative = path.strip_prefix(&root).expect("under store").to_string_lossy().into_owned();
                if path.is_dir() {
                    if relative != "pg" && relative != "sqlite" {
                        dirs.push(path);
                    }
                } else if relative != "mod.rs" && relative != "seam.rs" {
                    files.push((relative, std::fs::read_to_string(&path).expect("read")));
                }
            }
        }
        assert!(files.len() >= 15, "{files:?}");
        files
    }

    #[test]
    fn the_rooms_hold_no_sql_and_name_no_driver() {
        for (file, text) in logic_files() {
            // Code only: comments may name what they explain.
            let code: String =
                text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            let text = code;
            for word in ["sqlx::", "query!", "query_as!", "Db::Pg", "Db::Lite", "Tx::Pg", "Tx::Lite", "lite::", "pg::"]
            {
                assert!(!text.contains(word), "store/{file} holds `{word}`: its statements belong in pg/ and sqlite/");
            }
        }
    }

    #[test]
    fn no_two_rooms_import_each_other() {
        // A room is a file's first path segment without `.rs`.
        let room = |file: &str| file.split('/').next().unwrap_or(file).trim_end_matches(".rs").to_owned();
        let files = logic_files();
        let rooms: BTreeSet<String> = files.iter().map(|(f, _)| room(f)).collect();
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, text) in &files {
            let me = room(file);
            for other in &rooms {
                let named =
                    [format!("super::{other}::"), format!("super::super::{other}::"), format!("store::{other}::")]
                        .iter()
                        .any(|p| text.contains(p.as_str()));
                if *other != me && named {
                    uses.entry(me.clone()).or_default().insert(other.clone());
                }
            }
        }
        for (a, used) in &uses {
            for b in used {
                let back = uses.get(b).is_some_and(|u| u.contains(a));
                assert!(!back, "store/{a} and store/{b} import each other: {uses:?}");
            }
        }
    }
}
