//! Security as an outsider meets it: a real `serve` process requiring
//! credentials, keys made with `switchyard keys create`, tokens signed as an
//! identity provider would, workers held to the egress policy.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Child;

use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, switchyard};

const WAIT: Duration = Duration::from_secs(30);

/// A `serve` process with credentials required (no anonymous access).
struct Secured {
    base: String,
    http: reqwest::Client,
    _serve: Child,
}

impl Secured {
    async fn start(db: &TestDb, extra_toml: &str) -> Secured {
        Secured::start_with(db, extra_toml, &[]).await
    }

    async fn start_with(db: &TestDb, extra_toml: &str, env: &[(&str, &str)]) -> Secured {
        let path = std::env::temp_dir().join(format!("{}-secured-{}.toml", db.schema, free_port()));
        let toml = format!(
            "default_agent = \"stub\"\n[[agents]]\nname = \"stub\"\nurl = \"http://127.0.0.1:9\"\n{extra_toml}\n"
        );
        std::fs::write(&path, toml).expect("config");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = switchyard(db, &["serve", "--listen", &listen, "--config", &path.to_string_lossy()]);
        command.env_remove("SWITCHYARD_ANONYMOUS").env_remove("SWITCHYARD_EGRESS_ALLOW");
        for (name, value) in env {
            command.env(name, value);
        }
        let serve = command.spawn().expect("serve");
        eventually(WAIT, "serve up", || async { http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200) }).await;
        Secured {
            base: format!("http://{listen}"),
            http: reqwest::Client::builder().timeout(WAIT).build().expect("client"),
            _serve: serve,
        }
    }

    /// A JSON-RPC call with these headers; (HTTP status, envelope).
    async fn rpc(&self, auth: &[(&str, &str)], method: &str, params: Value) -> (u16, Value) {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut request = self.http.post(format!("{}/", self.base)).header("A2A-Version", "1.0").json(&body);
        for (name, value) in auth {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("rpc");
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// An HTTP+JSON call; (HTTP status, body).
    async fn rest(&self, auth: &[(&str, &str)], method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("A2A-Version", "1.0");
        for (name, value) in auth {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("rest");
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }
}

/// Runs `switchyard keys create`; the key is the last line it prints.
pub(crate) async fn create_key(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let out = switchyard(db, &all).output().await.expect("keys create");
    assert!(out.status.success(), "keys create failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let key = text.lines().last().expect("a key").to_owned();
    assert!(key.starts_with("sy_"), "{text}");
    key
}

/// POSTs `body` as A2A v1 JSON; the JSON answer.
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http.post(url).header("A2A-Version", "1.0").json(body).send().await.expect("send");
    response.json().await.expect("json")
}

fn code(envelope: &Value) -> i64 {
    envelope["error"]["code"].as_i64().unwrap_or(0)
}

fn message(text: &str) -> Value {
    json!({ "message": { "role": "ROLE_USER", "messageId": uuid::Uuid::new_v4().to_string(), "parts": [{ "text": text }] },
            "configuration": { "returnImmediately": true } })
}

#[tokio::test]
async fn credentials_decide_who_sees_what_on_every_operation_and_binding() {
    let Some(db) = TestDb::new().await else { return };
    let api = Secured::start(&db, "").await;
    let ann = create_key(&db, &["--tenant", "acme", "--principal", "ann"]).await;
    let bob = create_key(&db, &["--tenant", "acme", "--principal", "bob"]).await;
    let carol = create_key(&db, &["--tenant", "globex", "--principal", "ann"]).await;
    let ann = [("X-API-Key", ann.as_str())];

    // Nobody is served without credentials, on either binding, with a challenge.
    let (status, envelope) = api.rpc(&[], "ListTasks", json!({})).await;
    assert_eq!((status, code(&envelope)), (401, -31401));
    let response = api.http.get(format!("{}/tasks", api.base)).send().await.expect("get");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get_all("www-authenticate").iter().count() >= 1);
    let (status, _) = api.rpc(&[("X-API-Key", "sy_made_up")], "ListTasks", json!({})).await;
    assert_eq!(status, 401, "a made-up key");

    // Ann's task, with a push config; the body's tenant cannot move her.
    let mut request = message("mine");
    request["tenant"] = json!("acme");
    let (status, created) = api.rpc(&ann, "SendMessage", request.clone()).await;
    assert_eq!(status, 200, "{created}");
    let id = created["result"]["task"]["id"].as_str().expect("task id").to_owned();
    // v0.3's HTTP+JSON binding is behind the same door, with the same scoping.
    let v03 = |key: Option<&str>| {
        let mut request = api.http.get(format!("{}/v1/tasks/{id}", api.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        async move { request.send().await.expect("get").status().as_u16() }
    };
    assert_eq!(v03(None).await, 401);
    assert_eq!(v03(Some(ann[0].1)).await, 200, "Ann's task, over v0.3");
    assert_eq!(v03(Some(bob.as_str())).await, 404, "not Bob's");
    let (status, _) = api
        .rpc(
            &ann,
            "CreateTaskPushNotificationConfig",
            json!({ "taskId": id, "id": "c1", "url": "https://hooks.example/x" }),
        )
        .await;
    assert_eq!(status, 200);

    // Bob (same tenant) and Carol (same principal name, other tenant) find
    // nothing of Ann's, whatever they name, on both bindings.
    for key in [&bob, &carol] {
        let who = [("X-API-Key", key.as_str())];
        for (method, params) in [
            ("GetTask", json!({ "id": id })),
            ("CancelTask", json!({ "id": id })),
            ("SubscribeToTask", json!({ "id": id })),
            ("GetTask", json!({ "id": id, "tenant": "acme" })),
            ("GetTaskPushNotificationConfig", json!({ "taskId": id, "id": "c1" })),
            ("ListTaskPushNotificationConfigs", json!({ "taskId": id })),
            ("DeleteTaskPushNotificationConfig", json!({ "taskId": id, "id": "c1" })),
            ("CreateTaskPushNotificationConfig", json!({ "taskId": id, "id": "c2", "url": "https://hooks.example/y" })),
        ] {
            let (_, envelope) = api.rpc(&who, method, params.clone()).await;
            assert_eq!(code(&envelope), -32001, "{method} {params}: {envelope}");
        }
        let mut answer = message("an answer that is not mine to give");
        answer["message"]["taskId"] = json!(id);
        assert_eq!(code(&api.rpc(&who, "SendMessage", answer).await.1), -32001);
        for (method, path) in [
            (Method::GET, format!("/tasks/{id}")),
            (Method::GET, format!("/acme/tasks/{id}")),
            (Method::POST, format!("/tasks/{id}:cancel")),
            (Method::GET, format!("/tasks/{id}/pushNotificationConfigs")),
            (Method::GET, format!("/tasks/{id}/pushNotificationConfigs/c1")),
            (Method::DELETE, format!("/tasks/{id}/pushNotificationConfigs/c1")),
        ] {
            let body = (method == Method::POST).then(|| json!({}));
            let (status, body) = api.rest(&who, method.clone(), &path, body).await;
            assert_eq!(status, 404, "{method} {path}: {body}");
        }
        let (_, listed) = api.rpc(&who, "ListTasks", json!({})).await;
        assert_eq!(listed["result"]["tasks"], json!([]), "nothing of Ann's is listed");
    }
    // Another tenant named outright is no tenant at all.
    let (_, envelope) = api.rpc(&[("X-API-Key", carol.as_str())], "ListTasks", json!({ "tenant": "acme" })).await;
    assert_eq!(code(&envelope), -32602);
    let (status, _) = api.rest(&[("X-API-Key", carol.as_str())], Method::GET, "/acme/tasks", None).await;
    assert_eq!(status, 400);
    // Tenant names are taken as written.
    let (_, envelope) = api.rpc(&ann, "ListTasks", json!({ "tenant": " acme" })).await;
    assert_eq!(code(&envelope), -32602);

    // The same messageId from Bob is Bob's own message, not a resend of Ann's.
    let (_, bobs) = api.rpc(&[("X-API-Key", bob.as_str())], "SendMessage", request.clone()).await;
    let bobs = bobs["result"]["task"]["id"].as_str().expect("Bob's own task");
    assert_ne!(bobs, id, "idempotency keys are per principal");
    // Ann's resend is still hers.
    let (_, again) = api.rpc(&ann, "SendMessage", request).await;
    assert_eq!(again["result"]["task"]["id"].as_str(), Some(id.as_str()));

    // Her push config is untouched by the others' attempts; she sees it.
    let (_, configs) = api.rpc(&ann, "ListTaskPushNotificationConfigs", json!({ "taskId": id })).await;
    assert_eq!(configs["result"]["configs"].as_array().map(Vec::len), Some(1), "{configs}");
    // Ann cancels: it works, and the audit log says who.
    let (_, canceled) = api.rpc(&ann, "CancelTask", json!({ "id": id })).await;
    assert_eq!(canceled["result"]["status"]["state"], "TASK_STATE_CANCELED");
    let out = switchyard(&db, &["tasks", "show", &id]).output().await.expect("tasks show");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("task.cancel") && shown.contains("acme/ann"), "{shown}");
    assert!(shown.contains("push_config.create") && shown.contains("hooks.example"), "{shown}");
    assert!(!shown.contains("sy_"), "no key in tasks show");

    // The card declares the scheme; the extended card is for Ann, not for nobody.
    let (_, card) = api.rest(&[], Method::GET, "/.well-known/agent-card.json", None).await;
    assert_eq!(card["securitySchemes"]["apiKey"]["apiKeySecurityScheme"]["name"], "X-API-Key");
    assert_eq!(card["capabilities"]["extendedAgentCard"], true);
    let (status, extended) = api.rest(&ann, Method::GET, "/extendedAgentCard", None).await;
    assert_eq!((status, extended["name"].as_str()), (200, Some("Switchyard")), "{extended}");
    assert_eq!(api.rest(&[], Method::GET, "/extendedAgentCard", None).await.0, 401);
}

#[tokio::test]
async fn a_revoked_key_stops_at_once_and_rates_are_per_principal() {
    let Some(db) = TestDb::new().await else { return };
    let api = Secured::start(&db, "").await;
    let ann = create_key(&db, &["--tenant", "acme", "--principal", "ann"]).await;
    let slow = create_key(&db, &["--tenant", "acme", "--principal", "slow", "--rate", "0.5", "--burst", "3"]).await;
    let list = |key: String| {
        let api = &api;
        async move { api.rpc(&[("X-API-Key", key.as_str())], "ListTasks", json!({})).await }
    };
    for _ in 0..3 {
        assert_eq!(list(slow.clone()).await.0, 200);
    }
    let (status, envelope) = list(slow.clone()).await;
    assert_eq!((status, code(&envelope)), (429, -31429), "the fourth in the window: {envelope}");
    let response = api.http.get(format!("{}/tasks", api.base)).header("X-API-Key", &slow).send().await.expect("get");
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Others are not slowed by it.
    for _ in 0..10 {
        assert_eq!(list(ann.clone()).await.0, 200);
    }

    let id = ann.split('_').nth(1).expect("key id").to_owned();
    let out = switchyard(&db, &["keys", "revoke", &id]).output().await.expect("revoke");
    assert!(out.status.success());
    assert_eq!(list(ann.clone()).await.0, 401, "the very next request is refused");
    let out = switchyard(&db, &["keys", "list"]).output().await.expect("list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(&id) && !listed.contains(&ann), "ids, never keys: {listed}");
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_scope_and_refuses_inward_agents() {
    let Some(db) = TestDb::new().await else { return };
    let api = Secured::start(&db, "").await;
    let user = create_key(&db, &["--tenant", "acme", "--principal", "ann"]).await;
    let admin = create_key(&db, &["--tenant", "ops", "--principal", "root", "--scope", "admin"]).await;
    let (status, _) = api.rest(&[], Method::GET, "/admin/agents", None).await;
    assert_eq!(status, 401);
    let (status, _) = api.rest(&[("X-API-Key", user.as_str())], Method::GET, "/admin/agents", None).await;
    assert_eq!(status, 403, "a key without the admin scope");
    let admin = [("X-API-Key", admin.as_str())];
    let (status, _) = api.rest(&admin, Method::GET, "/admin/agents", None).await;
    assert_eq!(status, 200);
    for (url, why) in [
        ("http://127.0.0.1:5432", "loopback"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://10.0.0.7/", "private"),
        ("http://user:pass@agents.example/", "credentials"),
        ("http://agents.example/\r\nX-Injected: 1", "control"),
        ("http://localhost:8080/", "this machine"),
        // Spellings the HTTP client reads as those same addresses.
        ("http://2130706433:5432/", "loopback"),
        ("http://0x7f.1:5432/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://2852039166/latest", "link-local"),
        ("http://\u{ff11}\u{ff12}\u{ff17}\u{3002}0\u{3002}0\u{3002}1/", "loopback"),
    ] {
        let (status, body) =
            api.rest(&admin, Method::POST, "/admin/agents", Some(json!({ "name": "bad", "url": url }))).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.to_string().contains(why), "{url}: {body}");
    }
    let (status, _) = api
        .rest(&admin, Method::POST, "/admin/agents", Some(json!({ "name": "good", "url": "https://agents.example/a" })))
        .await;
    assert_eq!(status, 201);
    let audit: Vec<(String, String)> =
        sqlx::query_as("SELECT action, principal FROM audit_log WHERE action LIKE 'admin.%' ORDER BY id")
            .fetch_all(db.pool())
            .await
            .expect("audit");
    assert_eq!(audit, vec![("admin.agent.add".to_owned(), "root".to_owned())]);
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret).expect("key")).expect("sign")
}

#[tokio::test]
async fn bearer_tokens_are_checked_for_signature_time_issuer_and_audience() {
    let Some(db) = TestDb::new().await else { return };
    let secret = "a-shared-secret-of-at-least-32-bytes!";
    let api = Secured::start_with(
        &db,
        "[auth.jwt]\nhs256_secret_env = \"TEST_JWT_SECRET\"\nissuers = [\"https://id.example\"]\n\
         audiences = [\"switchyard\"]\nleeway = \"5s\"\n",
        &[("TEST_JWT_SECRET", secret)],
    )
    .await;
    let claims = json!({ "sub": "ann", "tenant": "acme", "iss": "https://id.example", "aud": "switchyard",
                         "exp": now() + 300, "nbf": now() - 10 });
    let bearer = |token: &str| format!("Bearer {token}");
    let good = bearer(&hs256(&claims, secret.as_bytes()));
    let (status, created) = api.rpc(&[("Authorization", &good)], "SendMessage", message("by token")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["result"]["task"]["id"].as_str().expect("id").to_owned();
    // The token's subject in its tenant is the same principal as a key's.
    let key = create_key(&db, &["--tenant", "acme", "--principal", "ann"]).await;
    let (_, seen) = api.rpc(&[("X-API-Key", &key)], "GetTask", json!({ "id": id })).await;
    assert_eq!(seen["result"]["id"].as_str(), Some(id.as_str()));

    let with = |change: Value| {
        let mut c = claims.clone();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let none_header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", base64_url(claims.to_string().as_bytes()));
    for (what, token) in [
        ("forged", hs256(&claims, b"another-secret-another-secret-12345")),
        ("expired", hs256(&with(json!({ "exp": now() - 60 })), secret.as_bytes())),
        ("not yet valid", hs256(&with(json!({ "nbf": now() + 60 })), secret.as_bytes())),
        ("wrong issuer", hs256(&with(json!({ "iss": "https://evil.example" })), secret.as_bytes())),
        ("wrong audience", hs256(&with(json!({ "aud": "someone-else" })), secret.as_bytes())),
        ("no tenant", hs256(&with(json!({ "tenant": null })), secret.as_bytes())),
        ("no expiry", hs256(&with(json!({ "exp": null })), secret.as_bytes())),
        ("empty subject", hs256(&with(json!({ "sub": "" })), secret.as_bytes())),
        ("no subject", hs256(&with(json!({ "sub": null })), secret.as_bytes())),
        ("alg none", unsigned),
    ] {
        let (status, envelope) = api.rpc(&[("Authorization", &bearer(&token))], "GetTask", json!({ "id": id })).await;
        assert_eq!((status, code(&envelope)), (401, -31401), "{what}: {envelope}");
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A key pair made by `openssl`: (private PEM, public PEM).
fn keypair(dir: &std::path::Path, name: &str, algorithm: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let private = dir.join(format!("{name}.pem"));
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-quiet"])
        .args(algorithm)
        .arg("-out")
        .arg(&private)
        .status()
        .expect("openssl");
    assert!(status.success());
    let public =
        std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&private).output().expect("openssl");
    (std::fs::read(&private).expect("read"), public.stdout)
}

fn jwk(key: &jsonwebtoken::EncodingKey, algorithm: jsonwebtoken::Algorithm, kid: &str) -> Value {
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, algorithm).expect("jwk");
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).expect("json")
}

fn signed(key: &jsonwebtoken::EncodingKey, algorithm: jsonwebtoken::Algorithm, kid: &str, claims: &Value) -> String {
    let header = jsonwebtoken::Header { kid: Some(kid.to_owned()), ..jsonwebtoken::Header::new(algorithm) };
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

#[tokio::test]
async fn jwks_keys_verify_rs256_and_es256_rotate_and_refuse_algorithm_confusion() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let Some(db) = TestDb::new().await else { return };
    let dir = std::env::temp_dir().join(format!("{}-jwks", db.schema));
    std::fs::create_dir_all(&dir).expect("dir");
    let (rsa, rsa_public) = keypair(&dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let (ec, _) = keypair(&dir, "ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let (rsa2, _) = keypair(&dir, "rsa2", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let rsa = EncodingKey::from_rsa_pem(&rsa).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&ec).expect("ec");
    let rsa2 = EncodingKey::from_rsa_pem(&rsa2).expect("rsa2");
    let jwks = dir.join("jwks.json");
    let write = |keys: Vec<Value>| std::fs::write(&jwks, json!({ "keys": keys }).to_string()).expect("jwks");
    write(vec![jwk(&rsa, Algorithm::RS256, "r1"), jwk(&ec, Algorithm::ES256, "e1")]);
    let api = Secured::start(&db, &format!("[auth.jwt]\njwks_file = {:?}\n", jwks.to_string_lossy())).await;
    let claims = json!({ "sub": "ann", "tenant": "acme", "exp": now() + 300 });
    let call = |token: String| {
        let api = &api;
        async move { api.rpc(&[("Authorization", &format!("Bearer {token}"))], "ListTasks", json!({})).await.0 }
    };
    assert_eq!(call(signed(&rsa, Algorithm::RS256, "r1", &claims)).await, 200, "RS256");
    assert_eq!(call(signed(&ec, Algorithm::ES256, "e1", &claims)).await, 200, "ES256");
    // The RSA public key used as an HMAC secret: the classic confusion.
    let confused = signed(&EncodingKey::from_secret(&rsa_public).expect("key"), Algorithm::HS256, "r1", &claims);
    assert_eq!(call(confused).await, 401, "HS256 against an RSA key");
    assert_eq!(
        call(signed(&rsa, Algorithm::RS256, "e1", &claims)).await,
        401,
        "an RSA signature under the EC key's id"
    );
    // Rotation: a key not in the set yet is refused; once the file has it, accepted.
    let next = signed(&rsa2, Algorithm::RS256, "r2", &claims);
    assert_eq!(call(next.clone()).await, 401);
    write(vec![jwk(&rsa2, Algorithm::RS256, "r2"), jwk(&ec, Algorithm::ES256, "e1")]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(next.clone()).await, 200, "the rotated-in key");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(signed(&rsa2, Algorithm::RS256, "r9", &claims)).await, 401);
    // Rotation out: a key removed from the file is refused once the file
    // changed, although its id is known and no unknown id forced a read.
    let ec_token = signed(&ec, Algorithm::ES256, "e1", &claims);
    assert_eq!(call(ec_token.clone()).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write(vec![jwk(&rsa2, Algorithm::RS256, "r2")]);
    assert_eq!(call(ec_token).await, 401, "the removed key");
    assert_eq!(call(next).await, 200, "the key that stayed");
}

/// Serve, a worker and the demo agent, every task routed to the demo agent.
async fn stack(db: &TestDb, worker_args: &[&str], worker_env: &[(&str, &str)]) -> (String, u16, Vec<Child>) {
    let agent_port = free_port();
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let agent = switchyard(db, &["demo-agent", "--listen", &agent_listen]).spawn().expect("agent");
    let config = crate::harness::agent_config(db, "demo", &format!("http://{agent_listen}"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = switchyard(db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
    let mut args = vec!["worker", "--config", &config, "--poll-interval", "200ms"];
    args.extend_from_slice(worker_args);
    let mut command = switchyard(db, &args);
    for (name, value) in worker_env {
        command.env(name, value);
    }
    let worker = command.spawn().expect("worker");
    eventually(WAIT, "api and agent up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
            && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    (format!("http://{listen}"), agent_port, vec![agent, serve, worker])
}

#[tokio::test]
async fn one_tenants_long_tasks_do_not_starve_another_tenant() {
    let Some(db) = TestDb::new().await else { return };
    let (base, _, _processes) = stack(&db, &["--concurrency", "4", "--tenant-max-running", "2"], &[]).await;
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let send = |tenant: &str, text: &str, immediately: bool| {
        let mut body = message(text);
        body["configuration"]["returnImmediately"] = json!(immediately);
        http.post(format!("{base}/{tenant}/message:send")).header("A2A-Version", "1.0").json(&body).send()
    };
    for _ in 0..30 {
        assert_eq!(send("greedy", "sleep 5000", true).await.expect("send").status().as_u16(), 200);
    }
    let leased = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM jobs j JOIN tasks t ON t.id = j.task_id
             WHERE j.state = 'leased' AND j.kind = 'delegate' AND t.tenant = 'greedy'",
        )
        .fetch_one(db.pool())
        .await
        .expect("count")
    };
    eventually(WAIT, "the greedy tenant at its cap", || async { leased().await == 2 }).await;
    // The bound: a short task of another tenant finishes within 2 s while 28
    // long ones wait (without the cap it would wait 5 s for a free slot).
    let started = std::time::Instant::now();
    let response = send("modest", "echo hi", false).await.expect("send");
    let body: Value = response.json().await.expect("json");
    let took = started.elapsed();
    assert_eq!(body["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
    assert!(took < Duration::from_secs(2), "the other tenant waited {took:?}");
    assert!(leased().await <= 2, "the cap held");
}

#[tokio::test]
async fn workers_refuse_agents_the_egress_policy_forbids_and_say_little_about_them() {
    use axum::response::IntoResponse;
    let Some(db) = TestDb::new().await else { return };
    // The worker may reach 127.0.0.2 (a stand-in for an allowed network),
    // not the rest of loopback, where the demo agent and PostgreSQL are.
    let (base, agent_port, _processes) = stack(&db, &[], &[("SWITCHYARD_EGRESS_ALLOW", "127.0.0.2")]).await;
    let card: Value = reqwest::get(format!("http://127.0.0.1:{agent_port}/.well-known/agent-card.json"))
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    let inward = card.clone();
    // gRPC interfaces too, by a literal address and by a name resolving
    // inward (the channel's own resolution is what is judged there).
    let host = String::from_utf8(std::process::Command::new("hostname").output().expect("hostname").stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let grpc_card = |address: String| {
        let mut card = card.clone();
        card["supportedInterfaces"] = json!([{ "url": address, "protocolBinding": "GRPC", "protocolVersion": "1.0" }]);
        card
    };
    let (grpc_literal, grpc_dns) =
        (grpc_card(format!("127.0.0.1:{agent_port}")), grpc_card(format!("{host}:{agent_port}")));
    let target = format!("http://127.0.0.1:{agent_port}/.well-known/agent-card.json");
    let app = axum::Router::new()
        .route(
            "/redirect/.well-known/agent-card.json",
            axum::routing::get(move || {
                let target = target.clone();
                async move { axum::response::Redirect::temporary(&target).into_response() }
            }),
        )
        .route("/inward/.well-known/agent-card.json", axum::routing::get(move || async move { axum::Json(inward) }))
        .route(
            "/grpc-literal/.well-known/agent-card.json",
            axum::routing::get(move || async move { axum::Json(grpc_literal) }),
        )
        .route("/grpc-dns/.well-known/agent-card.json", axum::routing::get(move || async move { axum::Json(grpc_dns) }))
        .route(
            "/leaky/.well-known/agent-card.json",
            axum::routing::get(|| async { (axum::http::StatusCode::NOT_FOUND, "SECRET-INTERNAL-PAGE db=10.0.0.3") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
    let other = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A name that resolves to loopback, and is not `localhost` (refused by
    // name before any lookup): this machine's own name, as /etc/hosts has it.
    let resolved: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host.as_str(), 0)).await.map(Iterator::collect).unwrap_or_default();
    assert!(
        !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()),
        "this test needs the host name {host:?} to resolve to loopback (it resolves to {resolved:?})"
    );
    for (name, url) in [
        ("literal", format!("http://127.0.0.1:{agent_port}")),
        ("dns", format!("http://{host}:{agent_port}")),
        ("redirect", format!("http://{other}/redirect")),
        ("inward", format!("http://{other}/inward")),
        ("leaky", format!("http://{other}/leaky")),
        ("grpc-literal", format!("http://{other}/grpc-literal")),
        ("grpc-dns", format!("http://{other}/grpc-dns")),
    ] {
        db.store.agent_upsert(name, &url).await.expect("register");
    }
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    for (agent, expected) in [
        ("literal", "loopback"),
        ("dns", "loopback"),
        ("redirect", "redirect"),
        ("inward", "loopback"),
        ("leaky", "HTTP 404"),
        ("grpc-literal", "loopback"),
        ("grpc-dns", "loopback"),
    ] {
        let mut body = message("echo never");
        body["message"]["metadata"] = json!({ "switchyard": { "agent": agent } });
        let sent = post_json(&http, &format!("{base}/message:send"), &body).await;
        let id = sent["task"]["id"].as_str().expect("id").to_owned();
        let deadline = std::time::Instant::now() + WAIT;
        let task = loop {
            let task: Value = http
                .get(format!("{base}/tasks/{id}"))
                .header("A2A-Version", "1.0")
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            if task["status"]["state"] == "TASK_STATE_FAILED" {
                break task;
            }
            if std::time::Instant::now() > deadline {
                let error: Option<String> = sqlx::query_scalar("SELECT last_error FROM jobs WHERE task_id = $1::uuid")
                    .bind(&id)
                    .fetch_one(db.pool())
                    .await
                    .expect("job");
                panic!("{agent}: the task did not fail ({error:?}): {task}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let reason = task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains(expected), "{agent}: {reason}");
        assert!(!reason.contains("SECRET") && !reason.contains("10.0.0.3"), "{agent}: {reason}");
        let attempts: i32 = sqlx::query_scalar("SELECT max(attempt) FROM jobs WHERE task_id = $1::uuid")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .expect("attempts");
        assert_eq!(attempts, 1, "{agent}: a refusal is a verdict, not retried");
    }
    let received: Value =
        serde_json::from_str(&http_get(agent_port, "/received").await.expect("received").1).expect("json");
    assert_eq!(received.as_object().map(|m| m.len()), Some(0), "the demo agent was never reached: {received}");
}

#[tokio::test]
async fn our_card_is_signed_and_a_tampered_or_unsigned_remote_card_is_refused() {
    use switchyard_engine::card_signature::{CardSigner, verify};
    let Some(db) = TestDb::new().await else { return };
    let dir = std::env::temp_dir().join(format!("{}-cards", db.schema));
    std::fs::create_dir_all(&dir).expect("dir");
    let (pem, _) = keypair(&dir, "card", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("key");
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json!({ "keys": [jwk(&key, jsonwebtoken::Algorithm::ES256, "k1")] })).expect("jwks");
    let jwks_file = dir.join("trusted.json");
    std::fs::write(&jwks_file, serde_json::to_string(&jwks).expect("json")).expect("write");
    let signer = CardSigner::from_pem(&pem, "k1").expect("signer");

    // The demo agent's card as three servers would serve it.
    let agent_port = free_port();
    let _agent =
        switchyard(&db, &["demo-agent", "--listen", &format!("127.0.0.1:{agent_port}")]).spawn().expect("agent");
    eventually(WAIT, "agent up", || async { http_get(agent_port, "/.well-known/agent-card.json").await.is_some() })
        .await;
    let plain: Value =
        serde_json::from_str(&http_get(agent_port, "/.well-known/agent-card.json").await.expect("card").1)
            .expect("json");
    let mut signed = plain.clone();
    signer.sign(&mut signed).expect("sign");
    let mut tampered = signed.clone();
    tampered["description"] = json!("a card changed after it was signed");
    // `turncoat` serves the signed card until told to serve the tampered one.
    let turned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let turncoat = {
        let (turned, signed, tampered) = (turned.clone(), signed.clone(), tampered.clone());
        move || async move { axum::Json(if turned.load(std::sync::atomic::Ordering::SeqCst) { tampered } else { signed }) }
    };
    let app = axum::Router::new()
        .route("/signed/.well-known/agent-card.json", axum::routing::get(move || async move { axum::Json(signed) }))
        .route("/tampered/.well-known/agent-card.json", axum::routing::get(move || async move { axum::Json(tampered) }))
        .route("/unsigned/.well-known/agent-card.json", axum::routing::get(move || async move { axum::Json(plain) }))
        .route("/turncoat/.well-known/agent-card.json", axum::routing::get(turncoat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let cards = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = dir.join("switchyard.toml");
    let mut toml = String::from("default_agent = \"signed\"\n");
    for name in ["signed", "tampered", "unsigned", "turncoat"] {
        toml.push_str(&format!("[[agents]]\nname = \"{name}\"\nurl = \"http://{cards}/{name}\"\n"));
    }
    toml.push_str(&format!(
        "[card]\nsigning_key_file = {:?}\nkey_id = \"k1\"\n[trust]\ncard_keys_file = {:?}\nrequire_signed_cards = true\n",
        dir.join("card.pem").to_string_lossy(),
        jwks_file.to_string_lossy()
    ));
    std::fs::write(&config, toml).expect("config");
    let config = config.to_string_lossy().into_owned();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
    let _worker =
        switchyard(&db, &["worker", "--config", &config, "--poll-interval", "200ms"]).spawn().expect("worker");
    eventually(WAIT, "serve up", || async { http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200) }).await;

    // Our own card carries a signature that verifies against our key.
    let ours: Value =
        serde_json::from_str(&http_get(port, "/.well-known/agent-card.json").await.expect("card").1).expect("json");
    assert_eq!(verify(&ours, &jwks), Ok("k1".to_owned()), "{ours}");

    // `agents add` with signatures required refuses an unsigned card; one run
    // without that config stores it, and the workers still refuse to use it.
    let refused = switchyard(&db, &["agents", "--config", &config, "add", "late", &format!("http://{cards}/unsigned")])
        .output()
        .await
        .expect("agents add");
    assert!(!refused.status.success(), "an unsigned card registered with signatures required");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not signed"), "{refused:?}");
    let sneaked = switchyard(&db, &["agents", "add", "sneaky", &format!("http://{cards}/unsigned")])
        .output()
        .await
        .expect("agents add");
    assert!(sneaked.status.success(), "{sneaked:?}");

    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let send = |agent: &'static str| {
        let http = http.clone();
        let listen = listen.clone();
        async move {
            let mut body = message(&format!("echo via {agent}"));
            body["configuration"]["returnImmediately"] = json!(false);
            body["message"]["metadata"] = json!({ "switchyard": { "agent": agent } });
            let answer = post_json(&http, &format!("http://{listen}/message:send"), &body).await;
            answer.get("task").unwrap_or(&answer).clone()
        }
    };
    // A card verified once and tampered with since is not used, although
    // the stored copy verified when it was fetched.
    assert_eq!(send("turncoat").await["status"]["state"], "TASK_STATE_COMPLETED");
    turned.store(true, std::sync::atomic::Ordering::SeqCst);
    sqlx::query("UPDATE agents SET card_fetched_at = now() - interval '1 hour' WHERE name = 'turncoat'")
        .execute(db.pool())
        .await
        .expect("age the stored card");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the workers' agent cache
    for (agent, expected) in [
        ("signed", "TASK_STATE_COMPLETED"),
        ("tampered", "TASK_STATE_FAILED"),
        ("unsigned", "TASK_STATE_FAILED"),
        ("sneaky", "TASK_STATE_FAILED"),
        ("turncoat", "TASK_STATE_FAILED"),
    ] {
        let task = send(agent).await;
        let answer = &task;
        assert_eq!(task["status"]["state"], expected, "{agent}: {answer}");
        if expected == "TASK_STATE_FAILED" {
            let reason = task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default();
            assert!(reason.contains("signed") || reason.contains("signature"), "{agent}: {reason}");
        }
    }
    // Only the tasks of verified cards reached the agent (signed, and turncoat before it turned).
    let received: Value =
        serde_json::from_str(&http_get(agent_port, "/received").await.expect("received").1).expect("json");
    assert_eq!(received.as_object().map(|m| m.len()), Some(2), "{received}");
}

/// `config check` warns about a plan naming an agent the file does not define.
#[tokio::test]
async fn config_check_names_a_plans_undefined_members() {
    let Some(db) = TestDb::new().await else { return };
    let path = std::env::temp_dir().join(format!("{}-plans.toml", db.schema));
    let toml = "[[agents]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\n[[plans]]\nname = \"p\"\nfanout = [\"a\", \"ghost\"]\n";
    std::fs::write(&path, toml).expect("write");
    let path = path.to_string_lossy().into_owned();
    let checked = switchyard(&db, &["config", "check", &path]).output().await.expect("check");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{said}");
    assert!(said.contains("\"ghost\"") && !said.contains("\"a\","), "{said}");
}

/// `config check` says ok only to what `serve` accepts: an `[auth]` table
/// `serve` would refuse at start is refused by the check too, naming it.
#[tokio::test]
async fn config_check_refuses_what_serve_refuses() {
    let Some(db) = TestDb::new().await else { return };
    let dir = std::env::temp_dir().join(format!("{}-check", db.schema));
    std::fs::create_dir_all(&dir).expect("dir");
    let agent = "[[agents]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\n";
    for (name, auth, good) in [
        ("fine", "[auth]\nanonymous = true\n", true),
        ("no secret", "[auth.jwt]\nhs256_secret_env = \"SWITCHYARD_TEST_NO_SUCH_VAR\"\n", false),
        ("no key file", "[auth.jwt]\njwks_file = \"/nonexistent/jwks.json\"\n", false),
        ("two sources", "[auth.jwt]\njwks_file = \"/x\"\njwks_url = \"https://id.example/jwks\"\n", false),
    ] {
        let path = dir.join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, format!("{agent}{auth}")).expect("write");
        let path = path.to_string_lossy().into_owned();
        let checked = switchyard(&db, &["config", "check", &path]).output().await.expect("check");
        assert_eq!(checked.status.success(), good, "{name}: {checked:?}");
        if !good {
            assert!(String::from_utf8_lossy(&checked.stderr).contains("auth"), "{name}: {checked:?}");
            let port = free_port();
            let served = switchyard(&db, &["serve", "--listen", &format!("127.0.0.1:{port}"), "--config", &path])
                .output()
                .await
                .expect("serve");
            assert!(!served.status.success(), "{name}: serve started on a config the check refused");
        }
    }
}
