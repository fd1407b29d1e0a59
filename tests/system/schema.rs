//! The two schemas are written by hand, once per dialect, so they are held
//! equal here: both stores are migrated, read back from their catalogs, put
//! into one normal form, and compared table by table — columns (type,
//! nullability, default), keys, foreign keys, check constraints, triggers
//! and indexes (unique, partial, on which columns). Any difference fails,
//! unless it is one of the few the dialects cannot avoid, each listed below
//! with its reason. A listed difference that no longer occurs fails too, so
//! the list cannot outlive what it excuses.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::{Driver, TestDb};

/// Differences the two dialects cannot avoid, as the comparison words them.
/// (PostgreSQL's partitions of the event log are read as their parent: the
/// windows are storage, not schema.)
const ALLOWED: &[(&str, &str)] = &[
    (
        "api_keys.scopes default: postgres '{}', sqlite '[]'",
        "a list is a text[] on PostgreSQL and a JSON array on SQLite; both defaults are the empty list",
    ),
    (
        "tasks.artifact_ids default: postgres '{}', sqlite '[]'",
        "a list is a text[] on PostgreSQL and a JSON array on SQLite; both defaults are the empty list",
    ),
    (
        "push_configs named checks: postgres {\"push_configs_auth_size\", \"push_configs_token_size\", \
         \"push_configs_version_known\"}, sqlite {}",
        "the same three conditions, named on PostgreSQL and declared on their columns on SQLite; naming \
         them there means rebuilding a table whose deletion cascades into push_deliveries, for a name",
    ),
    (
        "task_events foreign key (task_id): only on sqlite",
        "PostgreSQL's log is partitioned by its task's creation time and a window is dropped whole, which a \
         cascade from each task row would redo row by row; the embedded log has no windows and goes with \
         its task through the cascade",
    ),
];

/// One table, in the normal form both catalogs are read into.
#[derive(Debug, Default, PartialEq)]
struct Table {
    /// Name → (type, not null, default).
    columns: BTreeMap<String, Column>,
    primary_key: Vec<String>,
    /// Column lists of UNIQUE constraints (not unique indexes: those are indexes).
    uniques: BTreeSet<Vec<String>>,
    /// (columns, referenced table, referenced columns, on delete, deferred).
    foreign_keys: BTreeMap<Vec<String>, ForeignKey>,
    /// How many CHECK constraints, and the names of those that carry one
    /// (PostgreSQL's generated `<table>_<column>_check` names are not names).
    checks: usize,
    named_checks: BTreeSet<String>,
    triggers: BTreeSet<String>,
}

#[derive(Debug, PartialEq, Clone)]
struct Column {
    kind: &'static str,
    not_null: bool,
    default: Option<String>,
}

#[derive(Debug, PartialEq, Clone)]
struct ForeignKey {
    table: String,
    columns: Vec<String>,
    on_delete: String,
    deferred: bool,
}

/// An index of its own (not one behind a key or UNIQUE constraint).
#[derive(Debug, PartialEq, Clone)]
struct Index {
    table: String,
    unique: bool,
    partial: bool,
    /// Column names; an expression is `(expr)`.
    columns: Vec<String>,
}

#[derive(Debug, Default)]
struct Schema {
    tables: BTreeMap<String, Table>,
    indexes: BTreeMap<String, Index>,
}

/// Storage classes: what the column holds, whichever way the dialect spells
/// it. SQLite keeps ids and hashes as blobs, JSON and arrays as text, and
/// times as integers (microseconds), as its migration's header says.
fn storage_class(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "uuid" | "bytea" | "blob" => "bytes",
        "text" | "jsonb" | "json" | "array" | "_text" => "text",
        "smallint" | "integer" | "bigint" | "int" | "timestamp with time zone" => "integer",
        "double precision" | "real" => "real",
        other => panic!("a column type the comparison does not know: {other}"),
    }
}

/// Defaults, without PostgreSQL's casts. `now()` is no default to compare:
/// the embedded store writes its clock's time itself (it has one writer and
/// one clock), where PostgreSQL lets the column take the transaction's.
fn normal_default(default: Option<String>) -> Option<String> {
    let default = default?;
    if default == "now()" || default.starts_with("nextval(") {
        return None;
    }
    let bare = match default.find("::") {
        Some(cast) => default[..cast].to_owned(),
        None => default,
    };
    Some(bare)
}

async fn postgres(db: &TestDb) -> Schema {
    let pool = db.pool();
    let schema = db.schema.as_str();
    let mut out = Schema::default();
    let columns: Vec<(String, String, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, \
                CASE WHEN c.data_type = 'ARRAY' THEN 'array' ELSE c.data_type::text END, \
                c.is_nullable = 'NO', c.column_default::text \
         FROM information_schema.columns c \
         WHERE c.table_schema = $1 AND c.table_name <> '_sqlx_migrations' \
           AND NOT EXISTS (SELECT 1 FROM pg_class p JOIN pg_namespace pn ON pn.oid = p.relnamespace \
                           WHERE pn.nspname = c.table_schema AND p.relname = c.table_name AND p.relispartition)",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("columns");
    for (table, column, kind, not_null, default) in columns {
        let column_row = Column { kind: storage_class(&kind), not_null, default: normal_default(default) };
        out.tables.entry(table).or_default().columns.insert(column, column_row);
    }

    // Constraints with their columns in key order: table, name, kind,
    // columns, referenced table and columns, on delete, deferred.
    type ConstraintRow = (String, String, String, Vec<String>, Option<String>, Vec<String>, String, bool);
    let constraints: Vec<ConstraintRow> = sqlx::query_as(
        "SELECT t.relname::text, k.conname::text, k.contype::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i) \
                          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i), \
                    r.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(coalesce(k.confkey, '{}')) WITH ORDINALITY u(n, i) \
                          JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i), \
                    k.confdeltype::text, k.condeferred \
             FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace LEFT JOIN pg_class r ON r.oid = k.confrelid \
             WHERE n.nspname = $1 AND t.relname <> '_sqlx_migrations' AND k.contype IN ('p', 'u', 'f', 'c') \
               AND NOT t.relispartition",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("constraints");
    for (table, name, kind, columns, referenced, referenced_columns, on_delete, deferred) in constraints {
        let entry = out.tables.entry(table.clone()).or_default();
        match kind.as_str() {
            "p" => entry.primary_key = columns,
            "u" => {
                entry.uniques.insert(columns);
            }
            "f" => {
                let on_delete = match on_delete.as_str() {
                    "c" => "CASCADE",
                    "n" => "SET NULL",
                    "d" => "SET DEFAULT",
                    "r" => "RESTRICT",
                    _ => "NO ACTION",
                };
                let key = ForeignKey {
                    table: referenced.expect("a referenced table"),
                    columns: referenced_columns,
                    on_delete: on_delete.to_owned(),
                    deferred,
                };
                entry.foreign_keys.insert(columns, key);
            }
            _ => {
                entry.checks += 1;
                if !name.ends_with("_check") {
                    entry.named_checks.insert(name);
                }
            }
        }
    }

    let triggers: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, g.tgname::text FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND NOT g.tgisinternal AND NOT c.relispartition",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("triggers");
    for (table, name) in triggers {
        out.tables.entry(table).or_default().triggers.insert(name);
    }

    let indexes: Vec<(String, String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT i.relname::text, c.relname::text, x.indisunique, x.indpred IS NOT NULL, \
                ARRAY(SELECT CASE WHEN k.n = 0 THEN '(expr)' ELSE a.attname::text END \
                      FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, o) \
                      LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname <> '_sqlx_migrations' AND NOT c.relispartition \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("indexes");
    for (name, table, unique, partial, columns) in indexes {
        out.indexes.insert(name, Index { table, unique, partial, columns });
    }
    out
}

async fn sqlite(db: &TestDb) -> Schema {
    let pool = db.store.sqlite_pool().expect("embedded");
    let mut out = Schema::default();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE '\\_%' ESCAPE '\\' AND name <> 'sqlite_sequence'",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    for (table, sql) in tables {
        let mut entry = Table::default();
        let columns: Vec<(String, String, bool, Option<String>, i64)> =
            sqlx::query_as("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("columns");
        let mut key: Vec<(i64, String)> = Vec::new();
        for (column, kind, not_null, default, pk) in columns {
            if pk > 0 {
                key.push((pk, column.clone()));
            }
            // A key column is never null on PostgreSQL; SQLite lets a
            // rowid table's say otherwise, but the store never writes one.
            let column_row = Column { kind: storage_class(&kind), not_null: not_null || pk > 0, default };
            entry.columns.insert(column, column_row);
        }
        key.sort();
        entry.primary_key = key.into_iter().map(|(_, c)| c).collect();

        let keys: Vec<(i64, i64, String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT id, seq, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .expect("foreign keys");
        let mut grouped: BTreeMap<i64, (Vec<String>, ForeignKey)> = BTreeMap::new();
        for (id, _, referenced, from, to, on_delete) in keys {
            let (from_columns, key) = grouped.entry(id).or_insert_with(|| {
                (Vec::new(), ForeignKey { table: referenced, columns: Vec::new(), on_delete, deferred: false })
            });
            from_columns.push(from);
            key.columns.push(to.unwrap_or_default());
        }
        // SQLite's catalog does not say whether a key is deferred; its
        // declaration does.
        let declaration = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        for (from_columns, mut key) in grouped.into_values() {
            let line = declaration
                .split(',')
                .find(|part| part.contains(&format!("{} ", from_columns[0])) && part.contains("REFERENCES"));
            key.deferred = line.is_some_and(|l| l.contains("INITIALLY DEFERRED"));
            entry.foreign_keys.insert(from_columns, key);
        }

        // CHECK constraints: counted in the declaration, named where named.
        let upper = declaration.to_ascii_uppercase();
        entry.checks = upper.matches(" CHECK (").count() + upper.matches(" CHECK(").count();
        let words: Vec<&str> = declaration.split(' ').collect();
        for pair in words.windows(3) {
            if pair[0].eq_ignore_ascii_case("CONSTRAINT") && pair[2].eq_ignore_ascii_case("CHECK") {
                entry.named_checks.insert(pair[1].to_owned());
            }
        }

        let indexes: Vec<(String, bool, String, bool)> =
            sqlx::query_as("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("indexes");
        for (name, unique, origin, partial) in indexes {
            let columns: Vec<(i64, Option<String>)> =
                sqlx::query_as("SELECT cid, name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(pool)
                    .await
                    .expect("index columns");
            let columns: Vec<String> =
                columns.into_iter().map(|(_, column)| column.unwrap_or_else(|| "(expr)".to_owned())).collect();
            match origin.as_str() {
                "u" => {
                    entry.uniques.insert(columns);
                }
                "pk" => {}
                _ => {
                    out.indexes.insert(name, Index { table: table.clone(), unique, partial, columns });
                }
            }
        }
        out.tables.insert(table, entry);
    }
    let triggers: Vec<(String, String)> =
        sqlx::query_as("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(pool)
            .await
            .expect("triggers");
    for (table, name) in triggers {
        out.tables.entry(table).or_default().triggers.insert(name);
    }
    out
}

/// Every difference between the two, one line each.
fn differences(pg: &Schema, lite: &Schema) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let names = |a: &BTreeMap<String, Table>| a.keys().cloned().collect::<BTreeSet<_>>();
    for table in names(&pg.tables).symmetric_difference(&names(&lite.tables)) {
        let side = if pg.tables.contains_key(table) { "postgres" } else { "sqlite" };
        found.insert(format!("table {table}: only on {side}"));
    }
    for (name, p) in &pg.tables {
        let Some(l) = lite.tables.get(name) else { continue };
        let columns = |t: &Table| t.columns.keys().cloned().collect::<BTreeSet<_>>();
        for column in columns(p).symmetric_difference(&columns(l)) {
            let side = if p.columns.contains_key(column) { "postgres" } else { "sqlite" };
            found.insert(format!("{name}.{column}: only on {side}"));
        }
        for (column, pc) in &p.columns {
            let Some(lc) = l.columns.get(column) else { continue };
            if pc.kind != lc.kind {
                found.insert(format!("{name}.{column} type: postgres {}, sqlite {}", pc.kind, lc.kind));
            }
            if pc.not_null != lc.not_null {
                found.insert(format!("{name}.{column} not null: postgres {}, sqlite {}", pc.not_null, lc.not_null));
            }
            if pc.default != lc.default {
                let show = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".into());
                found.insert(format!(
                    "{name}.{column} default: postgres {}, sqlite {}",
                    show(&pc.default),
                    show(&lc.default)
                ));
            }
        }
        if p.primary_key != l.primary_key {
            found.insert(format!("{name} primary key: postgres {:?}, sqlite {:?}", p.primary_key, l.primary_key));
        }
        if p.uniques != l.uniques {
            found.insert(format!("{name} unique constraints: postgres {:?}, sqlite {:?}", p.uniques, l.uniques));
        }
        let keys = |t: &Table| t.foreign_keys.keys().cloned().collect::<BTreeSet<_>>();
        for columns in keys(p).symmetric_difference(&keys(l)) {
            let side = if p.foreign_keys.contains_key(columns) { "postgres" } else { "sqlite" };
            found.insert(format!("{name} foreign key ({}): only on {side}", columns.join(", ")));
        }
        for (columns, pk) in &p.foreign_keys {
            let Some(lk) = l.foreign_keys.get(columns) else { continue };
            let what = format!("{name} foreign key ({})", columns.join(", "));
            if (&pk.table, &pk.columns, &pk.on_delete) != (&lk.table, &lk.columns, &lk.on_delete) {
                found.insert(format!(
                    "{what}: postgres {}({}) on delete {}, sqlite {}({}) on delete {}",
                    pk.table,
                    pk.columns.join(", "),
                    pk.on_delete,
                    lk.table,
                    lk.columns.join(", "),
                    lk.on_delete
                ));
            }
            if pk.deferred != lk.deferred {
                let word = |d: bool| if d { "deferred" } else { "immediate" };
                found.insert(format!("{what}: postgres {}, sqlite {}", word(pk.deferred), word(lk.deferred)));
            }
        }
        if p.checks != l.checks {
            found.insert(format!("{name} check constraints: postgres {}, sqlite {}", p.checks, l.checks));
        }
        if p.named_checks != l.named_checks {
            found.insert(format!("{name} named checks: postgres {:?}, sqlite {:?}", p.named_checks, l.named_checks));
        }
        if p.triggers != l.triggers {
            found.insert(format!("{name} triggers: postgres {:?}, sqlite {:?}", p.triggers, l.triggers));
        }
    }
    let index_names = |s: &Schema| s.indexes.keys().cloned().collect::<BTreeSet<_>>();
    for index in index_names(pg).symmetric_difference(&index_names(lite)) {
        let side = if pg.indexes.contains_key(index) { "postgres" } else { "sqlite" };
        found.insert(format!("index {index}: only on {side}"));
    }
    for (name, p) in &pg.indexes {
        if let Some(l) = lite.indexes.get(name).filter(|l| *l != p) {
            found.insert(format!("index {name}: postgres {p:?}, sqlite {l:?}"));
        }
    }
    found
}

#[tokio::test]
async fn both_stores_have_the_same_schema() {
    let Some(pg) = TestDb::on(Driver::Postgres).await else { return };
    let lite = TestDb::on(Driver::Sqlite).await.expect("embedded");
    let (pg, lite) = (postgres(&pg).await, sqlite(&lite).await);

    // The comparison sees what it claims to see.
    assert!(pg.tables.len() >= 12 && pg.tables.len() == lite.tables.len(), "{:?}", pg.tables.keys());
    assert!(pg.indexes.contains_key("idempotency_keys_task"), "{:?}", pg.indexes.keys());
    let jobs = &lite.tables["jobs"];
    assert!(jobs.checks >= 4 && jobs.named_checks.contains("jobs_lease_iff_leased"), "{jobs:?}");
    assert_eq!(lite.tables["tasks"].triggers, BTreeSet::from(["tasks_terminal_is_final".to_owned()]));

    let found = differences(&pg, &lite);
    let allowed: BTreeSet<String> = ALLOWED.iter().map(|(difference, _)| (*difference).to_owned()).collect();
    let unexplained: Vec<&String> = found.difference(&allowed).collect();
    let stale: Vec<&String> = allowed.difference(&found).collect();
    assert!(unexplained.is_empty(), "the schemas differ:\n  {}", join(&unexplained));
    assert!(stale.is_empty(), "allowed differences that no longer occur:\n  {}", join(&stale));
}

fn join(lines: &[&String]) -> String {
    lines.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n  ")
}
