//! LISTEN/NOTIFY wake-ups and what happens when the connection drops.

use std::time::Duration;

use switchyard_engine::{Listener, Wake};

use crate::harness::{TestDb, submit};
use crate::proxy::Proxy;

async fn next(listener: &mut Listener) -> Wake {
    tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.expect("a wake-up within 10s")
}

#[tokio::test]
async fn submits_wake_job_listeners_and_appends_wake_event_listeners_after_commit() {
    let Some(db) = TestDb::new().await else { return };
    let channels = db.store.channels().clone();
    let mut listener = Listener::connect(&db.store, &[&channels.jobs, &channels.events]).await.expect("listen");
    let id = submit(&db.store, "x").await;
    // A new task wakes workers; nobody can be streaming it yet.
    assert_eq!(
        next(&mut listener).await,
        Wake::Notified { channel: channels.jobs.clone(), payload: "delegate".into() }
    );
    let working = switchyard_engine::TaskEvent::status(switchyard_engine::TaskState::Working, None);
    let task = db.store.task_append(id, &[working], None).await.expect("append");
    assert_eq!(
        next(&mut listener).await,
        Wake::Notified { channel: channels.events.clone(), payload: format!("{id}:{}:working", task.version) }
    );
}

#[tokio::test]
async fn a_dropped_connection_is_reported_as_resync_and_listening_resumes() {
    let Some(db) = TestDb::new().await else { return };
    let channels = db.store.channels().clone();
    let mut listener = Listener::connect(&db.store, &[&channels.jobs]).await.expect("listen");
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
    )
    .bind(&db.schema)
    .fetch_one(db.pool())
    .await
    .expect("terminate");
    assert_eq!(killed, 1, "exactly our listener's backend");
    assert_eq!(next(&mut listener).await, Wake::Resync);
    submit(&db.store, "after the reconnect").await;
    assert_eq!(
        next(&mut listener).await,
        Wake::Notified { channel: channels.jobs.clone(), payload: "delegate".into() }
    );
}

#[tokio::test]
async fn schemas_sharing_a_database_do_not_wake_each_other() {
    let (Some(a), Some(b)) = (TestDb::new().await, TestDb::new().await) else { return };
    let mut listener = Listener::connect(&a.store, &[&a.store.channels().jobs]).await.expect("listen");
    submit(&b.store, "for b").await;
    submit(&a.store, "for a").await;
    assert_eq!(
        next(&mut listener).await,
        Wake::Notified { channel: a.store.channels().jobs.clone(), payload: "delegate".into() }
    );
    assert!(tokio::time::timeout(Duration::from_millis(200), listener.recv()).await.is_err(), "nothing from b");
}

#[tokio::test]
async fn a_reset_connection_is_replaced_and_listening_resumes_every_time() {
    let Some(db) = TestDb::new().await else { return };
    let proxy = Proxy::start(&db.url).await;
    let config = switchyard_engine::StoreConfig {
        schema: db.schema.clone(),
        ..switchyard_engine::StoreConfig::new(proxy.url(&db.url))
    };
    let store = switchyard_engine::Store::connect(&config).await.expect("store through the proxy");
    let channels = db.store.channels().clone();
    let mut listener = Listener::connect(&store, &[&channels.jobs]).await.expect("listen");
    for round in 0..3 {
        proxy.reset_all();
        assert_eq!(next(&mut listener).await, Wake::Resync, "round {round}: the loss is reported");
        submit(&db.store, "after the reset").await;
        assert_eq!(
            next(&mut listener).await,
            Wake::Notified { channel: channels.jobs.clone(), payload: "delegate".into() },
            "round {round}: notifications flow on the new connection"
        );
    }
}

/// A LISTEN connection that goes silent without closing (the proxy holds
/// it open and passes nothing) is found out by its own probe and replaced;
/// notifications flow on the new one.
#[tokio::test]
async fn a_silent_connection_is_found_by_its_probe_and_replaced() {
    let Some(db) = TestDb::new().await else { return };
    let proxy = Proxy::start(&db.url).await;
    let config = switchyard_engine::StoreConfig {
        schema: db.schema.clone(),
        ..switchyard_engine::StoreConfig::new(proxy.url(&db.url))
    };
    let store = switchyard_engine::Store::connect(&config).await.expect("store through the proxy");
    let channels = db.store.channels().clone();
    let mut listener = Listener::connect(&store, &[&channels.jobs])
        .await
        .expect("listen")
        .with_probe(Duration::from_millis(500), Duration::from_millis(500));
    // Quiet but alive: probes come back, nothing is reported.
    assert!(tokio::time::timeout(Duration::from_secs(2), listener.recv()).await.is_err(), "a quiet, live connection");
    for round in 0..2 {
        proxy.silence_open();
        submit(&db.store, "lost in the silence").await;
        assert_eq!(next(&mut listener).await, Wake::Resync, "round {round}: the silence is found out");
        submit(&db.store, "after the reconnect").await;
        assert_eq!(
            next(&mut listener).await,
            Wake::Notified { channel: channels.jobs.clone(), payload: "delegate".into() },
            "round {round}: notifications flow on the new connection"
        );
    }
}
