//! One trace per delegation chain: the client's trace id on every span, the
//! worker's spans children of the api's across the database, the remote
//! call a child of the attempt, and the agent handed that call's context.
//! Spans go to an in-memory exporter installed for this test binary.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Value, json};
use switchyard_engine::route::RoutingRules;
use switchyard_worker::delegate::DelegationSettings;
use switchyard_worker::{Dispatcher, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::api::{Api, message, rpc_call};
use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, switchyard};

fn exporter() -> InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("switchyard-tests"));
            tracing_subscriber::registry().with(layer).init();
            exporter
        })
        .clone()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_chain_is_one_trace_across_api_worker_and_agent() {
    let exporter = exporter();
    let db = TestDb::new().await;
    let agent_port = free_port();
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let _agent = switchyard(&db, &["demo-agent", "--listen", &agent_listen]).spawn().expect("demo agent");
    eventually(Duration::from_secs(30), "the agent up", || async {
        http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    db.store.agent_upsert("demo", &format!("http://{agent_listen}")).await.expect("register");

    let api = Api::start_on(db.another_store().await, |c| switchyard_api::ApiConfig {
        routing: RoutingRules { default_agent: Some("demo".into()), ..RoutingRules::default() },
        ..c
    })
    .await;
    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(100),
        retry: switchyard_engine::RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(100),
            ..Default::default()
        },
        ..WorkerConfig::new("traced")
    };
    let worker = Worker::new(db.store.clone(), config, Dispatcher::new(DelegationSettings::default())).expect("worker");
    let token = shutdown.clone();
    let worker = tokio::spawn(async move { worker.run(token).await });

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let msg = message("fail 1 echo traced");
    let message_id = msg["messageId"].as_str().expect("id").to_owned();
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let headers = [("A2A-Version", "1.0"), ("traceparent", traceparent.as_str())];
    let answer = rpc_call(&api.http, &format!("{}/", api.base), "SendMessage", json!({"message": msg}), &headers).await;
    assert_eq!(answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    shutdown.cancel();
    worker.await.expect("join").expect("worker");

    let spans: Vec<SpanData> = exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace_id)
        .collect();
    let requests = named(&spans, "POST /");
    assert_eq!(requests.len(), 1, "one api span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let request = requests[0];
    assert_eq!(request.parent_span_id.to_string(), client_span, "the api continues the client's span");

    let jobs = named(&spans, "delegate job");
    assert_eq!(jobs.len(), 2, "a failed attempt and a retry, each claimed and run as a job");
    for job in &jobs {
        assert_eq!(job.parent_span_id, request.span_context.span_id(), "each job is a child of the api span");
    }
    let attempts = named(&spans, "delegate");
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        assert!(jobs.iter().any(|j| j.span_context.span_id() == attempt.parent_span_id), "delegation runs in its job");
    }
    let calls = named(&spans, "A2A/SendStreamingMessage");
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert!(
            attempts.iter().any(|a| a.span_context.span_id() == call.parent_span_id),
            "calls are children of attempts"
        );
    }
    assert!(
        attempts.iter().any(|a| a.events.iter().any(|e| e.name.contains("will retry"))),
        "the retry decision is recorded on the failed attempt's span"
    );

    let traces: Value =
        reqwest::get(format!("http://{agent_listen}/traces")).await.expect("get").json().await.expect("json");
    let received = traces[&message_id].as_str().expect("the agent got a traceparent").to_owned();
    let parts: Vec<&str> = received.split('-').collect();
    assert_eq!(parts[1], trace_id, "the agent continues the same trace");
    assert!(
        calls.iter().any(|c| c.span_context.span_id().to_string() == parts[2]),
        "as a child of our remote call span"
    );
}
