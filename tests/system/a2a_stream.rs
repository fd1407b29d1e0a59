//! Streaming over SSE: snapshot first, log order, the right end, replay on
//! reconnect, and any replica serving any stream.

use std::time::Duration;

use a2a::{Artifact, Part};
use serde_json::json;
use switchyard_engine::{ArtifactUpdate, TaskEvent, TaskId, TaskState};

use crate::api::{Api, message};
use crate::harness::TestDb;

fn chunk(text: &str, append: bool, last: bool) -> TaskEvent {
    TaskEvent::Artifact(ArtifactUpdate {
        artifact: Artifact {
            artifact_id: "out".into(),
            name: None,
            description: None,
            parts: vec![Part::text(text)],
            metadata: None,
            extensions: None,
        },
        append,
        last_chunk: last,
    })
}

fn kinds(events: &[crate::api::SseEvent], unwrap: impl Fn(&serde_json::Value) -> serde_json::Value) -> Vec<String> {
    events
        .iter()
        .map(|e| unwrap(&e.data).as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default())
        .collect()
}

async fn a_streaming_send_yields_the_task_then_every_update_then_closes(db: TestDb) {
    let api = Api::start(&db).await;
    let body =
        json!({"jsonrpc": "2.0", "id": "s1", "method": "SendStreamingMessage", "params": {"message": message("hi")}});
    let mut sse = api.sse("/", Some(body), &[("A2A-Version", "1.0")]).await;
    assert_eq!(sse.status, 200);
    assert!(sse.content_type.starts_with("text/event-stream"));
    let first = sse.next().await.expect("the task first");
    assert_eq!(first.data["id"], "s1", "every frame is a JSON-RPC response to our id");
    let id: TaskId = first.data["result"]["task"]["id"].as_str().expect("id").parse().expect("uuid");
    let store = db.another_store().await;
    tokio::spawn(async move { play_store(&store, id).await });
    let rest = sse.rest().await;
    let all: Vec<_> = std::iter::once(first.clone()).chain(rest.iter().cloned()).collect();
    assert_eq!(
        kinds(&all, |d| d["result"].clone()),
        ["task", "statusUpdate", "artifactUpdate", "artifactUpdate", "statusUpdate"]
    );
    assert_eq!(rest.last().expect("last").data["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(rest[2].data["result"]["artifactUpdate"]["append"], true);
    let ids: Vec<i64> = all.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids follow the log: {ids:?}");
}

/// Drives a task the way a worker would, with pauses so events arrive live.
async fn play_store(store: &switchyard_engine::Store, id: TaskId) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    for events in [
        vec![TaskEvent::status(TaskState::Working, None)],
        vec![chunk("Hel", false, false)],
        vec![chunk("lo", true, true)],
        vec![TaskEvent::status_with_text(TaskState::Completed, "done")],
    ] {
        store.task_append(id, &events, None).await.expect("append");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn rest_streams_carry_bare_stream_responses_and_end_on_input_required(db: TestDb) {
    let api = Api::start(&db).await;
    let mut sse = api.sse("/message:stream", Some(json!({"message": message("hi")})), &[("A2A-Version", "1.0")]).await;
    let first = sse.next().await.expect("task");
    let id: TaskId = first.data["task"]["id"].as_str().expect("id").parse().expect("uuid");
    db.store
        .task_append(id, &[TaskEvent::status_with_text(TaskState::InputRequired, "which one?")], None)
        .await
        .expect("ask");
    let rest = sse.rest().await;
    assert_eq!(rest.len(), 1, "the stream closes at the question");
    assert_eq!(rest[0].data["statusUpdate"]["status"]["state"], "TASK_STATE_INPUT_REQUIRED");
}

async fn subscribe_replays_after_last_event_id_with_no_gap_and_no_duplicate(db: TestDb) {
    let api = Api::start(&db).await;
    let sent =
        api.rpc("SendMessage", json!({"message": message("x"), "configuration": {"returnImmediately": true}})).await;
    let id_text = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    let id: TaskId = id_text.parse().expect("uuid");
    db.store
        .task_append(id, &[TaskEvent::status(TaskState::Working, None), chunk("a", false, false)], None)
        .await
        .expect("a");

    // Subscribe, read the snapshot and one update, then drop the connection.
    let mut first = api.sse(&format!("/tasks/{id_text}:subscribe"), None, &[("A2A-Version", "1.0")]).await;
    let snapshot = first.next().await.expect("snapshot");
    assert_eq!(snapshot.data["task"]["status"]["state"], "TASK_STATE_WORKING");
    let seen = snapshot.id.expect("snapshot id");
    drop(first);

    // Meanwhile the task moves on and finishes.
    db.store.task_append(id, &[chunk("b", true, false)], None).await.expect("b");
    db.store
        .task_append(id, &[chunk("c", true, true), TaskEvent::status(TaskState::Completed, None)], None)
        .await
        .expect("c");

    let last = seen.to_string();
    let mut resumed = api
        .sse(&format!("/tasks/{id_text}:subscribe"), None, &[("A2A-Version", "1.0"), ("Last-Event-ID", &last)])
        .await;
    let replay = resumed.rest().await;
    let ids: Vec<i64> = replay.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids, ((seen + 1)..=(seen + 3)).collect::<Vec<_>>(), "exactly the events after {seen}");
    assert_eq!(kinds(&replay, Clone::clone), ["artifactUpdate", "artifactUpdate", "statusUpdate"]);

    // A fresh subscription to a finished task is refused, before any stream starts.
    let refused = api.sse(&format!("/tasks/{id_text}:subscribe"), None, &[("A2A-Version", "1.0")]).await;
    assert_eq!(refused.status, 400);
    let rpc = api.rpc("SubscribeToTask", json!({"id": id_text})).await;
    assert_eq!(rpc["error"]["code"], -32004);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_serves_a_stream_for_a_task_the_first_accepted() {
    let Some(db) = TestDb::new().await else { return };
    let a = Api::start(&db).await;
    let b = Api::start(&db).await;
    let sent =
        a.rpc("SendMessage", json!({"message": message("x"), "configuration": {"returnImmediately": true}})).await;
    let id_text = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    let id: TaskId = id_text.parse().expect("uuid");
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "SubscribeToTask", "params": {"id": id_text}});
    let mut on_b = b.sse("/", Some(body), &[("A2A-Version", "1.0")]).await;
    assert_eq!(on_b.next().await.expect("snapshot").data["result"]["task"]["id"], id_text.as_str());
    // The writes come through the other replica's store connection.
    play_store(&db.store, id).await;
    let updates = on_b.rest().await;
    assert_eq!(
        kinds(&updates, |d| d["result"].clone()),
        ["statusUpdate", "artifactUpdate", "artifactUpdate", "statusUpdate"]
    );
}

async fn streams_close_where_they_stop_even_when_they_start_there(db: TestDb) {
    let api = Api::start(&db).await;
    let start = || async {
        let sent = api
            .rpc("SendMessage", json!({"message": message("x"), "configuration": {"returnImmediately": true}}))
            .await;
        let id_text = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
        let id: TaskId = id_text.parse().expect("uuid");
        (id, id_text)
    };
    // Nothing lingers: each stream must end by itself, long before this.
    let closes = Duration::from_secs(10);

    // A finished task, resumed at (or past) its last event.
    let (done, done_text) = start().await;
    let finished = db
        .store
        .task_append(
            done,
            &[TaskEvent::status(TaskState::Working, None), TaskEvent::status(TaskState::Completed, None)],
            None,
        )
        .await
        .expect("finish");
    for resume_at in [finished.version, finished.version + 5] {
        let last = resume_at.to_string();
        let mut resumed = api
            .sse(&format!("/tasks/{done_text}:subscribe"), None, &[("A2A-Version", "1.0"), ("Last-Event-ID", &last)])
            .await;
        let rest = tokio::time::timeout(closes, resumed.rest()).await.expect("the resumed stream closes at once");
        assert!(rest.is_empty(), "nothing after {last}: {rest:?}");
    }

    // A task waiting for input: a subscription stays open across the
    // question, sees the answer arrive and the task finish, then ends.
    let (asking, asking_text) = start().await;
    db.store
        .task_append(asking, &[TaskEvent::status_with_text(TaskState::InputRequired, "which one?")], None)
        .await
        .expect("ask");
    let mut subscribed = api.sse(&format!("/tasks/{asking_text}:subscribe"), None, &[("A2A-Version", "1.0")]).await;
    let snapshot = subscribed.next().await.expect("the snapshot");
    assert_eq!(snapshot.data["task"]["status"]["state"], "TASK_STATE_INPUT_REQUIRED");
    let held = tokio::time::timeout(Duration::from_millis(500), subscribed.next()).await;
    assert!(held.is_err(), "the subscription stays open while the task waits: {held:?}");
    let answered = db
        .store
        .task_append(
            asking,
            &[TaskEvent::status(TaskState::Working, None), TaskEvent::status(TaskState::Completed, None)],
            None,
        )
        .await
        .expect("answered and finished");
    let rest = tokio::time::timeout(closes, subscribed.rest()).await.expect("the subscription closes at the end");
    let states: Vec<_> = rest.iter().map(|e| e.data["statusUpdate"]["status"]["state"].clone()).collect();
    assert_eq!(states, [json!("TASK_STATE_WORKING"), json!("TASK_STATE_COMPLETED")]);
    assert_eq!(rest.last().and_then(|e| e.id), Some(answered.version));

    // Resumed from a question: on to the end as well.
    let (asked, asked_text) = start().await;
    let question = db
        .store
        .task_append(asked, &[TaskEvent::status_with_text(TaskState::InputRequired, "which?")], None)
        .await
        .expect("ask");
    let last = question.version.to_string();
    let mut resumed = api
        .sse(&format!("/tasks/{asked_text}:subscribe"), None, &[("A2A-Version", "1.0"), ("Last-Event-ID", &last)])
        .await;
    let held = tokio::time::timeout(Duration::from_millis(500), resumed.next()).await;
    assert!(held.is_err(), "a resumed subscription stays open while the task waits: {held:?}");
    db.store.task_append(asked, &[TaskEvent::status(TaskState::Canceled, None)], None).await.expect("cancel");
    let rest = tokio::time::timeout(closes, resumed.rest()).await.expect("it closes at the end");
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].data["statusUpdate"]["status"]["state"], "TASK_STATE_CANCELED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_one_task_share_each_read_of_its_log() {
    use tokio_stream::StreamExt;

    let Some(db) = TestDb::new().await else { return };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hub = switchyard_api::hub::EventHub::start(db.store.clone(), shutdown.clone());
    // Let the hub's LISTEN connect (its first wake-up goes to nobody).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = crate::harness::submit(&db.store, "watched").await;
    let task = db.store.task_load(id).await.expect("task");
    let start = switchyard_api::events::Start::After(task.version);
    let counts = switchyard_api::events::StreamCounts::default();
    let caller = crate::harness::caller();
    let mut streams: Vec<_> = (0..20)
        .map(|_| {
            let permit = counts.acquire(&caller, 20).expect("a permit");
            switchyard_api::events::stream_task(db.store.clone(), &hub, task.clone(), Vec::new(), start, permit)
        })
        .collect();
    assert!(counts.acquire(&caller, 20).is_none(), "the 21st stream is over the limit");
    // Each stream's first look at the log is its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let feed = hub.feed(id);
    let before = feed.reads();

    let events = [
        vec![TaskEvent::status(TaskState::Working, None)],
        vec![chunk("a", false, false)],
        vec![chunk("b", true, false)],
        vec![chunk("c", true, true)],
        vec![TaskEvent::status(TaskState::Completed, None)],
    ];
    for batch in events {
        let written = db.store.task_append(id, &batch, None).await.expect("append");
        for stream in &mut streams {
            let item = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("in time");
            assert_eq!(item.expect("an event").seq, written.version, "every stream gets every event");
        }
    }
    let reads = feed.reads() - before;
    assert!(reads <= 8, "5 events to 20 streams took {reads} reads of the log, not one per stream");
    shutdown.cancel();
}

async fn a_principal_holds_at_most_its_share_of_open_streams(db: TestDb) {
    let api =
        Api::start_on(db.another_store().await, |c| switchyard_api::ApiConfig { max_streams_per_principal: 2, ..c })
            .await;
    let (_, created) = api
        .rest(
            reqwest::Method::POST,
            "/message:send",
            Some(json!({ "message": message("stays submitted"), "configuration": { "returnImmediately": true } })),
        )
        .await;
    let id = created["task"]["id"].as_str().expect("task id").to_owned();
    let path = format!("/tasks/{id}:subscribe");
    let first = api.sse(&path, None, &[("A2A-Version", "1.0")]).await;
    let second = api.sse(&path, None, &[("A2A-Version", "1.0")]).await;
    assert_eq!((first.status, second.status), (200, 200));
    let third = api.http.get(format!("{}{path}", api.base)).header("A2A-Version", "1.0").send().await.expect("third");
    assert_eq!(third.status().as_u16(), 429, "a third open stream");
    assert!(third.headers().get("retry-after").is_some(), "a 429 says when to come back");
    // A stream given up frees its place.
    drop(first);
    crate::harness::eventually(Duration::from_secs(5), "a place to free up", || async {
        api.sse(&path, None, &[("A2A-Version", "1.0")]).await.status == 200
    })
    .await;
}

crate::harness::on_both_drivers!(
    a_streaming_send_yields_the_task_then_every_update_then_closes,
    rest_streams_carry_bare_stream_responses_and_end_on_input_required,
    subscribe_replays_after_last_event_id_with_no_gap_and_no_duplicate,
    streams_close_where_they_stop_even_when_they_start_there,
    a_principal_holds_at_most_its_share_of_open_streams,
);
