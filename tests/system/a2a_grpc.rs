//! The gRPC binding as a client meets it, with the proto's own generated
//! client against a real `serve` process that requires credentials: the
//! same authentication, tenancy and validation as the JSON bindings, and
//! errors as gRPC statuses carrying `google.rpc.ErrorInfo`.

use std::time::Duration;

use a2a_pb::proto;
use a2a_pb::proto::a2a_service_client::A2aServiceClient;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, switchyard};
use crate::security::create_key;

fn request<T>(message: T, key: Option<&str>, version: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert("x-api-key", key.parse().expect("metadata"));
    }
    if let Some(version) = version {
        request.metadata_mut().insert("a2a-version", version.parse().expect("metadata"));
    }
    request
}

fn send(text: &str) -> proto::SendMessageRequest {
    proto::SendMessageRequest {
        message: Some(proto::Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: proto::Role::User as i32,
            parts: vec![proto::Part { content: Some(proto::part::Content::Text(text.into())), ..Default::default() }],
            ..Default::default()
        }),
        configuration: Some(proto::SendMessageConfiguration { return_immediately: true, ..Default::default() }),
        ..Default::default()
    }
}

/// The status's `ErrorInfo` reason, and the status's code.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> (tonic::Code, String) {
    let status = result.expect_err("an error");
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "a2a-protocol.org");
    (status.code(), info.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_is_authenticated_scoped_and_answers_errors_with_error_info() {
    let Some(db) = TestDb::new().await else { return };
    let config = std::env::temp_dir().join(format!("{}-grpc.toml", db.schema));
    std::fs::write(&config, "default_agent = \"stub\"\n[[agents]]\nname = \"stub\"\nurl = \"http://127.0.0.1:9\"\n")
        .expect("config");
    let (port, grpc) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{port}");
    let config = config.to_string_lossy().into_owned();
    let args = ["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config, "--max-body-bytes", "65536"];
    let mut command = switchyard(&db, &args);
    command.env_remove("SWITCHYARD_ANONYMOUS");
    let _serve = command.spawn().expect("serve");
    eventually(Duration::from_secs(30), "serve up", || async { http_get(port, "/readyz").await.is_some() }).await;
    let ann = create_key(&db, &["--tenant", "acme", "--principal", "ann"]).await;
    let bob = create_key(&db, &["--tenant", "other", "--principal", "bob"]).await;
    let channel = Channel::from_shared(format!("http://{grpc}")).expect("uri").connect().await.expect("connect");
    let mut client = A2aServiceClient::new(channel.clone());

    // The standard health service answers without credentials, as /readyz does.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "lf.a2a.v1.A2AService"] {
        let check = || {
            let mut health = health.clone();
            async move {
                let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
                health.check(request).await.is_ok_and(|r| {
                    r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                })
            }
        };
        eventually(Duration::from_secs(10), "SERVING", check).await;
    }
    let unknown = health.check(tonic_health::pb::HealthCheckRequest { service: "nope".into() }).await;
    assert_eq!(unknown.expect_err("unknown service").code(), tonic::Code::NotFound);

    // No credential, a made-up one: UNAUTHENTICATED.
    let (code, reason) = refused(client.send_message(request(send("hi"), None, Some("1.0"))).await);
    assert_eq!((code, reason.as_str()), (tonic::Code::Unauthenticated, "UNAUTHENTICATED"));
    let (code, _) = refused(client.send_message(request(send("hi"), Some("sy_nope_nope"), None)).await);
    assert_eq!(code, tonic::Code::Unauthenticated);

    // Ann's task, stored under her tenant.
    let sent = client.send_message(request(send("hi"), Some(&ann), Some("1.0"))).await.expect("send").into_inner();
    let Some(proto::send_message_response::Payload::Task(task)) = sent.payload else { panic!("a task: {sent:?}") };
    assert_eq!(task.status.as_ref().map(|s| s.state), Some(proto::TaskState::Submitted as i32));
    let stored = db.store.task_load(task.id.parse().expect("uuid")).await.expect("stored");
    assert_eq!(stored.tenant, "acme");

    // Bob (another tenant) cannot see it, nor can Ann by naming his tenant.
    let get = |tenant: &str| proto::GetTaskRequest { id: task.id.clone(), tenant: tenant.into(), history_length: None };
    let (code, reason) = refused(client.get_task(request(get(""), Some(&bob), None)).await);
    assert_eq!((code, reason.as_str()), (tonic::Code::NotFound, "TASK_NOT_FOUND"));
    let (code, _) = refused(client.get_task(request(get("other"), Some(&ann), None)).await);
    assert_eq!(code, tonic::Code::NotFound);
    let mine = client.get_task(request(get("acme"), Some(&ann), None)).await.expect("get").into_inner();
    assert_eq!(mine.id, task.id);
    let list = |key: &str| request(proto::ListTasksRequest::default(), Some(key), None);
    assert_eq!(client.list_tasks(list(&ann)).await.expect("list").into_inner().tasks.len(), 1);
    assert!(client.list_tasks(list(&bob)).await.expect("list").into_inner().tasks.is_empty());

    // Validation names the field; versions other than 1.x are refused.
    let status = client
        .send_message(request(proto::SendMessageRequest::default(), Some(&ann), None))
        .await
        .expect_err("no message");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let violations = status.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations[0].field, "message");
    for version in ["0.3", "9.9"] {
        let (code, reason) = refused(client.send_message(request(send("hi"), Some(&ann), Some(version))).await);
        assert_eq!((code, reason.as_str()), (tonic::Code::FailedPrecondition, "VERSION_NOT_SUPPORTED"), "{version}");
    }
    let (code, reason) = refused(
        client
            .get_task(request(
                proto::GetTaskRequest { id: "not-a-task".into(), ..Default::default() },
                Some(&ann),
                None,
            ))
            .await,
    );
    assert_eq!((code, reason.as_str()), (tonic::Code::NotFound, "TASK_NOT_FOUND"));

    // Canceled once, canceled again: the same answer; then not cancelable
    // is reserved for tasks that ended otherwise.
    let cancel = || proto::CancelTaskRequest { id: task.id.clone(), ..Default::default() };
    for _ in 0..2 {
        let canceled = client.cancel_task(request(cancel(), Some(&ann), None)).await.expect("cancel").into_inner();
        assert_eq!(canceled.status.map(|s| s.state), Some(proto::TaskState::Canceled as i32));
    }

    // A message larger than the body limit is refused, and the server goes on.
    let status =
        client.send_message(request(send(&"x".repeat(100_000)), Some(&ann), None)).await.expect_err("too large");
    assert!(matches!(status.code(), tonic::Code::ResourceExhausted | tonic::Code::OutOfRange), "{status:?}");
    client.get_task(request(get(""), Some(&ann), None)).await.expect("still serving");

    // Bytes that are not the proto are the client's fault, not an internal
    // error: sent raw by the grpc library itself.
    let python = tokio::task::spawn_blocking(crate::interop::python_sdk).await.expect("venv");
    let script = format!(
        "import grpc\n\
         call = grpc.insecure_channel('{grpc}').unary_unary('/lf.a2a.v1.A2AService/SendMessage', \
         request_serializer=lambda b: b, response_deserializer=lambda b: b)\n\
         for body in [b'\\xff\\xff\\xff', b'\\x12\\x03abc']:\n\
         \x20   try:\n\
         \x20       call(body, timeout=10, metadata=[('x-api-key', '{ann}')])\n\
         \x20       print('OK')\n\
         \x20   except grpc.RpcError as e:\n\
         \x20       print(e.code().name)\n"
    );
    let out = tokio::process::Command::new(python).args(["-c", &script]).output().await.expect("python");
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        codes.lines().collect::<Vec<_>>(),
        ["INVALID_ARGUMENT", "INVALID_ARGUMENT"],
        "{codes}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An open gRPC stream holds a stopping api only for the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_grpc_stream_holds_shutdown_only_for_the_drain_timeout() {
    let Some(db) = TestDb::new().await else { return };
    let config = crate::harness::agent_config(&db, "stub", "http://127.0.0.1:9");
    let (port, grpc) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{port}");
    let args =
        ["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config, "--http-drain-timeout", "1s"];
    let mut serve = switchyard(&db, &args).spawn().expect("serve");
    eventually(Duration::from_secs(30), "serve up", || async { http_get(port, "/readyz").await.is_some() }).await;
    let channel = Channel::from_shared(format!("http://{grpc}")).expect("uri").connect().await.expect("connect");
    let mut client = A2aServiceClient::new(channel);
    // A task nobody works on: its stream stays open.
    let sent = client.send_message(send("hold")).await.expect("send").into_inner();
    let Some(proto::send_message_response::Payload::Task(task)) = sent.payload else { panic!("a task") };
    let subscribe = proto::SubscribeToTaskRequest { id: task.id, ..Default::default() };
    let mut stream = client.subscribe_to_task(subscribe).await.expect("subscribe").into_inner();
    assert!(stream.message().await.expect("first event").is_some(), "the stream is open");

    let pid = nix::unistd::Pid::from_raw(serve.id().expect("pid") as i32);
    let asked = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), serve.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(5), "stopped after {:?}", asked.elapsed());
}

/// A NUL, another control character or bytes that are not UTF-8, wherever a
/// client can put them outside a JSON body (a path segment, a query value,
/// a gRPC field), is the client's error: 400 / `INVALID_ARGUMENT` naming
/// where, never a 5xx or a status a client would retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_in_paths_queries_and_grpc_fields_are_the_clients_fault() {
    let Some(db) = TestDb::new().await else { return };
    let config = std::env::temp_dir().join(format!("{}-bytes.toml", db.schema));
    std::fs::write(&config, "default_agent = \"stub\"\n[[agents]]\nname = \"stub\"\nurl = \"http://127.0.0.1:9\"\n")
        .expect("config");
    let (port, grpc) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{port}");
    let config = config.to_string_lossy().into_owned();
    let _serve = switchyard(&db, &["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config])
        .spawn()
        .expect("serve");
    eventually(Duration::from_secs(30), "serve up", || async { http_get(port, "/readyz").await.is_some() }).await;
    let task = uuid::Uuid::now_v7();

    let http = reqwest::Client::new();
    for bad in ["%00", "%01", "%FF", "a%00b", "%C3%28", "%1B"] {
        for (path, field) in [
            (format!("/tasks/{bad}"), "path"),
            (format!("/{bad}/tasks"), "path"),
            (format!("/tasks/{task}/pushNotificationConfigs/{bad}"), "path"),
            (format!("/tasks?contextId={bad}"), "query parameter contextId"),
            (format!("/tasks?pageToken={bad}"), "query parameter pageToken"),
            (format!("/tasks?status={bad}"), "query parameter status"),
            (format!("/tasks/{task}/pushNotificationConfigs?pageToken={bad}"), "query parameter pageToken"),
        ] {
            let response =
                http.get(format!("http://{listen}{path}")).header("A2A-Version", "1.0").send().await.expect("request");
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(status, 400, "{path}: {body}");
            let named = body["error"]["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["fieldViolations"][0]["field"].as_str())
                .next()
                .unwrap_or_default()
                .to_owned();
            assert_eq!(named, field, "{path}: {body}");
        }
    }

    let channel = Channel::from_shared(format!("http://{grpc}")).expect("uri").connect().await.expect("connect");
    let mut client = A2aServiceClient::new(channel);
    fn v1<T>(message: T) -> tonic::Request<T> {
        request(message, None, Some("1.0"))
    }
    for bad in ["\0", "a\0b", "\u{1}", "x\u{1b}[31m"] {
        let statuses = [
            client.get_task(v1(proto::GetTaskRequest { id: bad.into(), ..Default::default() })).await.map(|_| ()),
            client
                .get_task(v1(proto::GetTaskRequest { id: task.to_string(), tenant: bad.into(), ..Default::default() }))
                .await
                .map(|_| ()),
            client.cancel_task(v1(proto::CancelTaskRequest { id: bad.into(), ..Default::default() })).await.map(|_| ()),
            client
                .list_tasks(v1(proto::ListTasksRequest { context_id: bad.into(), ..Default::default() }))
                .await
                .map(|_| ()),
            client
                .list_tasks(v1(proto::ListTasksRequest { page_token: bad.into(), ..Default::default() }))
                .await
                .map(|_| ()),
            client
                .get_task_push_notification_config(v1(proto::GetTaskPushNotificationConfigRequest {
                    task_id: task.to_string(),
                    id: bad.into(),
                    ..Default::default()
                }))
                .await
                .map(|_| ()),
            client
                .delete_task_push_notification_config(v1(proto::DeleteTaskPushNotificationConfigRequest {
                    task_id: bad.into(),
                    id: "x".into(),
                    ..Default::default()
                }))
                .await
                .map(|_| ()),
            client
                .subscribe_to_task(v1(proto::SubscribeToTaskRequest { id: bad.into(), ..Default::default() }))
                .await
                .map(|_| ()),
        ];
        for (i, status) in statuses.into_iter().enumerate() {
            let status = status.expect_err(&format!("case {i} with {bad:?} refused"));
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "case {i} with {bad:?}: {status:?}");
        }
    }
}

/// A throwaway CA, and a certificate it signed for `localhost` and
/// 127.0.0.1: (the CA's PEM, the server's chain PEM, its key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SanType};
    // Distinct names: a certificate whose issuer is its own subject reads
    // as self-signed to OpenSSL-based clients.
    let named = |name: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = named("Switchyard test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::from_params(&params, &ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    server.distinguished_name = named("localhost");
    server.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let server = server.signed_by(&key, &issuer).expect("server certificate");
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_speaks_tls_when_given_a_certificate_and_nothing_else() {
    let Some(db) = TestDb::new().await else { return };
    let (ca, chain, key) = certificates();
    let dir = std::env::temp_dir().join(format!("{}-tls", db.schema));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_path, chain).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let (port, grpc) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{port}");
    let (cert, key) = (cert_path.to_string_lossy().into_owned(), key_path.to_string_lossy().into_owned());
    let args = ["serve", "--listen", &listen, "--grpc-listen", &grpc, "--grpc-tls-cert", &cert, "--grpc-tls-key", &key];
    let _serve = switchyard(&db, &args).spawn().expect("serve");
    eventually(Duration::from_secs(30), "serve up", || async { http_get(port, "/readyz").await.is_some() }).await;

    // A client trusting the CA connects and sends.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{grpc}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("a TLS connection");
    let mut client = A2aServiceClient::new(channel);
    let sent = client.send_message(request(send("over tls"), None, Some("1.0"))).await.expect("send").into_inner();
    assert!(matches!(sent.payload, Some(proto::send_message_response::Payload::Task(_))), "{sent:?}");

    // The official Python SDK's client, trusting only the CA, does too.
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca).expect("ca");
    let python = tokio::task::spawn_blocking(crate::interop::python_sdk).await.expect("venv");
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_tls_client.py");
    let run = tokio::process::Command::new(python)
        .arg(script)
        .arg(format!("http://{listen}"))
        .arg(&ca_path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("in time").expect("python ran");
    assert!(out.status.success(), "the Python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert!(report["task_id"].is_string(), "{report}");

    // Plaintext gets nowhere; nor does a client that does not trust the CA.
    let plain = Channel::from_shared(format!("http://{grpc}")).expect("uri").connect().await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => {
            A2aServiceClient::new(channel).send_message(request(send("x"), None, Some("1.0"))).await.is_err()
        }
    };
    assert!(refused, "a plaintext call was served");
    let stranger = tonic::transport::ClientTlsConfig::new().domain_name("localhost");
    let untrusted = Channel::from_shared(format!("https://{grpc}")).expect("uri").tls_config(stranger).expect("tls");
    let refused = match untrusted.connect().await {
        Err(_) => true,
        Ok(channel) => {
            A2aServiceClient::new(channel).send_message(request(send("x"), None, Some("1.0"))).await.is_err()
        }
    };
    assert!(refused, "a client that does not trust the CA was served");
}
