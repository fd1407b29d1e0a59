//! The hot statements keep using their indexes as the tables grow. With
//! 100,000 tasks (and their log, keys and jobs) in the tables and the
//! statistics fresh, the store's own calls are made — claim, fold,
//! ListTasks, the lease rescue and the retention sweep — on a store whose
//! sessions load PostgreSQL's `auto_explain` and send every plan back to
//! the client as a NOTICE: the plans PostgreSQL in fact ran, for the exact
//! statements and parameters the store sent (no copy to drift). No
//! statement may scan a large table whole, and each operation must use the
//! index built for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_engine::{Store, StoreConfig, TaskEvent, TaskFilter, TaskState};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::harness::{Driver, TestDb, caller, submit};

/// The tables that grow with every task: a whole scan of any of them is
/// the defect this test exists to catch.
const LARGE: [&str; 5] = ["tasks", "task_events", "idempotency_keys", "jobs", "push_deliveries"];

const TASKS: i64 = 100_000;

/// Fills the schema as a deployment's history would: mostly finished
/// tasks, a tenth still open, two log rows, a key and a job each; ids are
/// UUIDv7 of their creation time, as the store makes them (so the log
/// lies in its windows, here the history before the test's migration).
async fn fill(db: &TestDb) {
    let pool = db.pool();
    let statements = [
        format!(
            "INSERT INTO tasks (id, tenant, owner, context_id, state, status, version, created_at, status_at)
             SELECT (lpad(to_hex((extract(epoch FROM now() - make_interval(secs => g)) * 1000)::bigint), 12, '0')
                     || substr(md5(g::text), 1, 20))::uuid, 'acme', 'user' || (g % 50), 'ctx-' || (g % 20000),
                    s.state, jsonb_build_object('state', s.state), 2,
                    now() - make_interval(secs => g), now() - make_interval(secs => g)
             FROM generate_series(1, {TASKS}) g,
                  LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 'working' ELSE 'completed' END AS state) s"
        ),
        "INSERT INTO task_events (task_id, seq, kind, payload, created_at)
         SELECT t.id, s.seq, 'status', t.status, t.created_at FROM tasks t, generate_series(1, 2) s(seq)"
            .to_owned(),
        "INSERT INTO idempotency_keys (tenant, owner, key, task_id, created_at)
         SELECT tenant, owner, id::text, id, created_at FROM tasks"
            .to_owned(),
        "INSERT INTO jobs (task_id, kind, state, run_at, attempt, max_attempts, created_at, finished_at)
         SELECT id, 'delegate', CASE WHEN state = 'working' THEN 'ready' ELSE 'done' END, created_at,
                CASE WHEN state = 'working' THEN 0 ELSE 1 END, 3, created_at,
                CASE WHEN state = 'working' THEN NULL ELSE status_at END
         FROM tasks"
            .to_owned(),
        "ANALYZE".to_owned(),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.expect("fill");
    }
}

/// Collects the plans `auto_explain` sends to this thread's connections.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        #[derive(Default)]
        struct Message(String);
        impl Visit for Message {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.0 = value.to_owned();
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message::default();
        event.record(&mut message);
        if message.0.contains("Query Text:") {
            self.0.lock().expect("captured").push(message.0);
        }
    }
}

impl Captured {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("captured"))
    }
}

/// A second handle on the test's schema whose every session explains what
/// it runs, back to the client (superuser settings, given at connection).
/// `None`, said once on stderr, when the test's role may not load it (it
/// takes a superuser) or the server lacks it.
async fn explaining(db: &TestDb) -> Option<Store> {
    let options = "options=-c%20session_preload_libraries%3Dauto_explain\
                   %20-c%20auto_explain.log_min_duration%3D0\
                   %20-c%20auto_explain.log_level%3Dnotice";
    let url = format!("{}{}{options}", db.url, if db.url.contains('?') { '&' } else { '?' });
    let config = StoreConfig { schema: db.schema.clone(), ..StoreConfig::new(url) };
    match Store::connect(&config).await {
        Ok(store) => Some(store),
        Err(e) => {
            eprintln!("query_plans: auto_explain cannot be loaded here ({e}); the plans are not checked");
            None
        }
    }
}

/// Runs `operation` with plan capture on and checks what PostgreSQL ran:
/// no large table scanned whole, and each of `indexes` used.
async fn check<F, Fut>(captured: &Captured, what: &str, indexes: &[&str], operation: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    captured.take();
    operation().await;
    let mut plans = captured.take();
    // tracing caches whether anyone listens at a call site across the
    // whole process; while the rest of the suite's subscribers come and
    // go on other threads, a NOTICE can pass unheard. Asked again, the
    // plan is the same plan.
    for _ in 0..2 {
        if plans.is_empty() {
            operation().await;
            plans = captured.take();
        }
    }
    assert!(!plans.is_empty(), "{what}: no plan came back");
    for plan in &plans {
        for table in LARGE {
            // A partitioned table's partitions are named after it. The log's
            // default partition is the exception: it holds only what no
            // window covers (the events of tasks kept past their window's
            // end), and retention's orphan pass reads it whole.
            let partition = format!("Seq Scan on {table}_");
            let whole = plan.contains(&format!("Seq Scan on {table} "))
                || plan.match_indices(&partition).any(|(at, _)| !plan[at + partition.len()..].starts_with("default "));
            assert!(!whole, "{what}: a whole scan of {table}:\n{plan}");
        }
    }
    for index in indexes {
        assert!(
            plans.iter().any(|p| p.contains(&format!(" using {index} on ")) || p.contains(&format!(" on {index}"))),
            "{what}: no statement uses {index}:\n\n{}",
            plans.join("\n\n")
        );
    }
}

#[tokio::test]
async fn the_hot_statements_use_their_indexes_on_a_large_table() {
    let Some(db) = TestDb::on(Driver::Postgres).await else { return };
    fill(&db).await;
    let Some(explaining) = explaining(&db).await else { return };
    let store: &Store = &explaining;
    let open = submit(store, "an open task of ours").await;

    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone().with_filter(
        tracing_subscriber::filter::Targets::new().with_target("sqlx::postgres::notice", tracing::Level::TRACE),
    ));
    // The test's runtime is one thread, so the store's work (a BEGIN in a
    // task of its own included) is seen by this thread's subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    check(&captured, "the claim", &["jobs_claimable"], || async {
        store.job_claim("explain", 16, Duration::from_secs(30)).await.expect("claim");
    })
    .await;
    check(&captured, "the fair claim", &["jobs_claimable"], || async {
        store.job_claim_fair("explain", 16, Duration::from_secs(30), Some(2)).await.expect("claim");
    })
    .await;
    check(&captured, "the fold", &["tasks_pkey"], || async {
        store.task_append(open, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("fold");
    })
    .await;
    let filters = [
        TaskFilter::default(),
        TaskFilter { context_id: Some("ctx-7".into()), ..TaskFilter::default() },
        TaskFilter { state: Some(TaskState::Working), ..TaskFilter::default() },
    ];
    for filter in filters {
        check(&captured, &format!("ListTasks {filter:?}"), &["tasks_owner_recent"], || async {
            store.task_list(&caller(), &filter, 50, None, false).await.expect("list");
        })
        .await;
    }
    check(&captured, "the lease rescue", &["jobs_lease_expiry"], || async {
        store.job_rescue_expired(100, &[]).await.expect("rescue");
    })
    .await;
    // An hour's retention: nearly every finished task of the fill (spread
    // over the last 28 hours) is due, as after retention was first turned
    // on or a sweep fell behind — when a planner that expects to delete
    // much would rather scan the table than use its keys.
    check(&captured, "the retention sweep", &["tasks_finished", "jobs_done"], || async {
        store.retention_sweep(Duration::from_secs(3_600), 500, 1).await.expect("sweep");
    })
    .await;
}
