//! Traces as an operator receives them: `serve`, `worker` and `demo-agent`
//! run as real processes with the standard OTLP environment, and export to a
//! real OTLP/HTTP receiver started here, which decodes each request with the
//! OpenTelemetry protobuf types. What the receiver holds is what a Jaeger or
//! Tempo behind it would show.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use crate::api::{message, rpc_call};
use crate::harness::{TestDb, agent_config, eventually};
use crate::processes::{free_port, http_get, switchyard};

const WAIT: Duration = Duration::from_secs(30);

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

impl Received {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, as the specification defines it.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> (Collector, u16) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive)).with_state(collector.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, port)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn of(&self, service: &str, trace_id: &str) -> Vec<Received> {
        self.spans().into_iter().filter(|s| s.service == service && s.trace_id == trace_id).collect()
    }
}

async fn receive(
    State(collector): State<Collector>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/x-protobuf", "OTLP/HTTP with protobuf is the default protocol");
    let request = ExportTraceServiceRequest::decode(body).expect("a protobuf ExportTraceServiceRequest");
    collector.take(request);
    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
}

impl Collector {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in request.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .map(|r| flatten(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        attributes: flatten(&span.attributes),
                    });
                }
            }
        }
    }
}

/// The same collector behind OTLP/gRPC.
#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// A process of the stack, its stderr kept for the no-panic check.
struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(db: &TestDb, args: &[&str], env: &[(String, String)]) -> Process {
        let mut command = switchyard(db, args);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.stderr(Stdio::piped()).spawn().expect("spawn");
        let mut stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Process { child, log }
    }

    /// SIGTERM, then the exit code; the log is complete once it has exited.
    async fn stop(&mut self) -> i32 {
        let pid = self.child.id().expect("running") as i32;
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("signal");
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("exit in time").expect("wait");
        // Let the reader take the last bytes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status.code().unwrap_or(-1)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// `demo-agent`, `serve` and `worker`, each exporting to `endpoint` under a
/// service name of its own, with `extra` environment for each.
struct Stack {
    db: TestDb,
    agent: Process,
    serve: Process,
    worker: Process,
    api_port: u16,
    worker_metrics_port: u16,
}

impl Stack {
    /// `None` when there is no PostgreSQL to test against.
    async fn start(endpoint: &str, extra: &[(&str, &str)], api_extra: &[(&str, &str)]) -> Option<Stack> {
        let db = TestDb::new().await?;
        // Later entries win: `extra` over the defaults, `more` over both.
        let env = |service: &str, more: &[(&str, &str)]| -> Vec<(String, String)> {
            let defaults = [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_SERVICE_NAME", service),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("RUST_BACKTRACE", "1"),
            ];
            defaults.iter().chain(extra).chain(more).map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
        };
        let agent_port = free_port();
        let agent_listen = format!("127.0.0.1:{agent_port}");
        let agent = Process::spawn(&db, &["demo-agent", "--listen", &agent_listen], &env("demo-agent", &[]));
        let config = agent_config(&db, "demo", &format!("http://{agent_listen}"));
        let api_port = free_port();
        let listen = format!("127.0.0.1:{api_port}");
        let serve = Process::spawn(
            &db,
            &["serve", "--listen", &listen, "--config", &config],
            &env("switchyard-api", api_extra),
        );
        let worker_metrics_port = free_port();
        let metrics_listen = format!("127.0.0.1:{worker_metrics_port}");
        let worker = Process::spawn(
            &db,
            &["worker", "--config", &config, "--poll-interval", "200ms", "--metrics-listen", &metrics_listen],
            &env("switchyard-worker", &[]),
        );
        eventually(WAIT, "api, worker and agent up", || async {
            http_get(api_port, "/readyz").await.is_some_and(|r| r.0 == 200)
                && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
                && http_get(worker_metrics_port, "/metrics").await.is_some()
        })
        .await;
        Some(Stack { db, agent, serve, worker, api_port, worker_metrics_port })
    }

    async fn send(&self, text: &str, traceparent: &str) -> Value {
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        let headers = [("A2A-Version", "1.0"), ("traceparent", traceparent)];
        let url = format!("http://127.0.0.1:{}/", self.api_port);
        rpc_call(&http, &url, "SendMessage", json!({"message": message(text)}), &headers).await
    }

    /// Stops everything and asserts no process panicked or exited badly.
    async fn stop(mut self) {
        for (name, process) in
            [("serve", &mut self.serve), ("worker", &mut self.worker), ("demo-agent", &mut self.agent)]
        {
            let code = process.stop().await;
            let log = process.log();
            assert!(!log.contains("panicked"), "{name} panicked:\n{log}");
            assert_eq!(code, 0, "{name} exits cleanly on SIGTERM:\n{log}");
        }
        drop(self.db);
    }
}

/// The sum of a counter's samples in a Prometheus scrape.
fn counter(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_api_worker_and_agent_reach_a_real_collector_as_one_tree() {
    let (collector, port) = Collector::start().await;
    let endpoint = format!("http://127.0.0.1:{port}");
    // The api exports only at its periodic delay of a minute: its spans can
    // arrive only through the flush on shutdown.
    let Some(stack) = Stack::start(&endpoint, &[], &[("OTEL_BSP_SCHEDULE_DELAY", "60000")]).await else { return };

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let answer = stack.send("echo traced", &format!("00-{trace_id}-{client_span}-01")).await;
    let task = &answer["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    let task_id = task["id"].as_str().expect("task id").to_owned();
    let context_id = task["contextId"].as_str().expect("context id").to_owned();

    eventually(WAIT, "worker and agent spans at the collector", || {
        let collector = collector.clone();
        async move {
            collector.of("switchyard-worker", trace_id).iter().any(|s| s.name.starts_with("A2A/"))
                && !collector.of("demo-agent", trace_id).is_empty()
        }
    })
    .await;
    assert!(collector.of("switchyard-api", trace_id).is_empty(), "the api has not exported yet (delay of a minute)");
    stack.stop().await;

    // serve → job → delegate → client call → agent, all in the client's trace.
    let api = collector.of("switchyard-api", trace_id);
    let worker = collector.of("switchyard-worker", trace_id);
    let agent = collector.of("demo-agent", trace_id);
    let names = |spans: &[Received]| spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>();

    let server: Vec<&Received> = api.iter().filter(|s| s.name == "POST /").collect();
    assert_eq!(server.len(), 1, "one server span for the request, flushed at shutdown: {:?}", names(&api));
    let server = server[0];
    assert_eq!(server.parent, client_span, "the server span continues the client's span");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.route"), Some("/"));
    assert_eq!(server.attr("url.path"), Some("/"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(server.attr("rpc.system"), Some("jsonrpc"));
    assert_eq!(server.attr("rpc.method"), Some("SendMessage"));
    assert_eq!(server.attr("a2a.task.id"), Some(task_id.as_str()));
    assert_eq!(server.attr("a2a.context.id"), Some(context_id.as_str()));

    let job = worker.iter().find(|s| s.name == "delegate job").unwrap_or_else(|| panic!("{:?}", names(&worker)));
    assert_eq!(job.parent, server.span_id, "the job attempt is a child of the request that created it");
    assert_eq!(job.kind, SpanKind::Consumer as i32);
    assert_eq!(job.attr("a2a.task.id"), Some(task_id.as_str()));
    assert_eq!(job.attr("switchyard.job.attempt"), Some("1"));

    let delegate = worker.iter().find(|s| s.name == "delegate").expect("a delegate span");
    assert_eq!(delegate.parent, job.span_id, "delegation runs in its job");
    assert_eq!(delegate.attr("a2a.task.id"), Some(task_id.as_str()));
    assert_eq!(delegate.attr("a2a.context.id"), Some(context_id.as_str()));
    assert_eq!(delegate.attr("a2a.agent.name"), Some("demo"));
    assert_eq!(delegate.attr("switchyard.job.attempt"), Some("1"));

    let call = worker.iter().find(|s| s.name.starts_with("A2A/")).expect("a client call span");
    assert_eq!(call.parent, delegate.span_id, "the remote call is a child of the delegation");
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert_eq!(call.attr("rpc.system"), Some("jsonrpc"));
    assert_eq!(call.attr("rpc.method"), call.name.strip_prefix("A2A/"));
    assert_eq!(call.attr("http.request.method"), Some("POST"));
    assert_eq!(call.attr("server.address"), Some("127.0.0.1"));
    assert!(call.attr("url.full").is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{:?}", call.attributes);
    assert_eq!(call.attr("http.response.status_code"), Some("200"));

    let served = agent.iter().find(|s| s.parent == call.span_id).unwrap_or_else(|| panic!("{agent:?}"));
    assert_eq!(served.kind, SpanKind::Server as i32, "the agent's span is a server span under our client call");
    assert_eq!(served.attr("rpc.method"), call.attr("rpc.method"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_is_one_trace_with_a_span_per_child() {
    let (collector, port) = Collector::start().await;
    let Some(stack) = Stack::start(&format!("http://127.0.0.1:{port}"), &[], &[]).await else { return };
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let mut fanout = message("echo traced");
    fanout["metadata"] = json!({"switchyard": {"fanout": ["demo", "demo"]}});
    let headers = [("A2A-Version", "1.0"), ("traceparent", &*format!("00-{trace_id}-00f067aa0ba902b8-01"))];
    let url = format!("http://127.0.0.1:{}/", stack.api_port);
    let answer = rpc_call(&http, &url, "SendMessage", json!({"message": fanout}), &headers).await;
    let parent = answer["result"]["task"]["id"].as_str().expect("parent id").to_owned();
    assert_eq!(answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    eventually(WAIT, "both children's delegations at the collector", || {
        let collector = collector.clone();
        async move { collector.of("switchyard-worker", trace_id).iter().filter(|s| s.name == "delegate").count() == 2 }
    })
    .await;
    stack.stop().await;

    let server = collector.of("switchyard-api", trace_id);
    let server = server.iter().find(|s| s.name == "POST /").expect("the request's span");
    let worker = collector.of("switchyard-worker", trace_id);
    let delegations: Vec<&Received> = worker.iter().filter(|s| s.name == "delegate").collect();
    let children: std::collections::HashSet<&str> = delegations.iter().filter_map(|d| d.attr("a2a.task.id")).collect();
    assert_eq!(children.len(), 2, "a delegation span per child task");
    assert!(!children.contains(parent.as_str()));
    for delegate in &delegations {
        assert_eq!(delegate.attr("switchyard.parent_task.id"), Some(parent.as_str()));
        let job = worker.iter().find(|s| s.span_id == delegate.parent).expect("its job span");
        assert_eq!(job.parent, server.span_id, "each child's job is a child of the request that made the plan");
    }
}

/// Sends tasks with the collector in a bad way, and checks that they finish
/// as usual while the lost spans are counted, in the api and the worker.
async fn tasks_finish_and_drops_are_counted(endpoint: &str) {
    let Some(stack) = Stack::start(endpoint, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "300")], &[]).await else { return };
    for n in 0..5 {
        let traceparent = format!("00-{:032x}-{:016x}-01", 0xabc0 + n, 0x10 + n);
        let answer = stack.send(&format!("echo {n}"), &traceparent).await;
        assert_eq!(answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    }
    for (what, port) in [("api", stack.api_port), ("worker", stack.worker_metrics_port)] {
        eventually(WAIT, "dropped spans counted", || async move {
            let scrape = http_get(port, "/metrics").await.map(|r| r.1).unwrap_or_default();
            counter(&scrape, "switchyard_trace_spans_dropped_total{reason=\"export_failed\"}") > 0.0
        })
        .await;
        let scrape = http_get(port, "/metrics").await.expect("scrape").1;
        assert_eq!(counter(&scrape, "switchyard_trace_spans_exported_total"), 0.0, "{what}: nothing was delivered");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_spans_not_tasks() {
    // Nothing listens on this port: every export is refused.
    tasks_finish_and_drops_are_counted(&format!("http://127.0.0.1:{}", free_port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_spans_not_tasks() {
    // Accepts connections and never answers: each export runs into its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    tasks_finish_and_drops_are_counted(&format!("http://127.0.0.1:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_protocol_variable_switches_export_to_grpc() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await
    });
    let Some(db) = TestDb::new().await else { return };
    let agent_port = free_port();
    let listen = format!("127.0.0.1:{agent_port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_SERVICE_NAME", "grpc-agent".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
    .map(|(n, v)| (n.to_owned(), v));
    let mut agent = Process::spawn(&db, &["demo-agent", "--listen", &listen], &env);
    eventually(WAIT, "the agent up", || async { http_get(agent_port, "/.well-known/agent-card.json").await.is_some() })
        .await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let http = reqwest::Client::new();
    let answer = rpc_call(
        &http,
        &format!("http://{listen}/"),
        "GetTask",
        json!({"id": "no-such-task"}),
        &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert!(answer.get("error").is_some(), "{answer}");
    eventually(WAIT, "the agent's span over gRPC", || {
        let collector = collector.clone();
        async move { collector.of("grpc-agent", trace_id).iter().any(|s| s.name == "A2A/GetTask") }
    })
    .await;
    assert_eq!(agent.stop().await, 0);
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

#[tokio::test]
async fn an_unknown_export_protocol_is_refused_at_startup() {
    let Some(db) = TestDb::new().await else { return };
    let out = switchyard(&db, &["demo-agent", "--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\""), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A gRPC call continues the caller's trace from its `traceparent`
/// metadata: one server span named by the RPC conventions, exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_is_a_server_span_in_the_callers_trace() {
    use a2a_pb::proto;
    let (collector, port) = Collector::start().await;
    let Some(db) = TestDb::new().await else { return };
    let config = agent_config(&db, "stub", "http://127.0.0.1:9");
    let (api_port, grpc) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{api_port}");
    let env: Vec<(String, String)> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("OTEL_SERVICE_NAME", "switchyard-api".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    let mut serve =
        Process::spawn(&db, &["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config], &env);
    eventually(WAIT, "serve up", || async { http_get(api_port, "/readyz").await.is_some() }).await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = proto::a2a_service_client::A2aServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::SendMessageRequest {
        message: Some(proto::Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: proto::Role::User as i32,
            parts: vec![proto::Part { content: Some(proto::part::Content::Text("hi".into())), ..Default::default() }],
            ..Default::default()
        }),
        configuration: Some(proto::SendMessageConfiguration { return_immediately: true, ..Default::default() }),
        ..Default::default()
    });
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("metadata"));
    let answer = client.send_message(request).await.expect("send").into_inner();
    let Some(proto::send_message_response::Payload::Task(task)) = answer.payload else { panic!("a task") };

    let name = "lf.a2a.v1.A2AService/SendMessage";
    eventually(WAIT, "the gRPC server span at the collector", || {
        let collector = collector.clone();
        async move { collector.of("switchyard-api", trace_id).iter().any(|s| s.name == name) }
    })
    .await;
    let spans = collector.of("switchyard-api", trace_id);
    let server = spans.iter().find(|s| s.name == name).expect("the span");
    assert_eq!(server.parent, client_span, "the server span continues the caller's span");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.attr("rpc.system"), Some("grpc"));
    assert_eq!(server.attr("rpc.service"), Some("lf.a2a.v1.A2AService"));
    assert_eq!(server.attr("rpc.method"), Some("SendMessage"));
    assert_eq!(server.attr("rpc.grpc.status_code"), Some("0"));
    assert_eq!(server.attr("a2a.task.id"), Some(task.id.as_str()));
    assert_eq!(serve.stop().await, 0, "serve exits cleanly:\n{}", serve.log());
}
