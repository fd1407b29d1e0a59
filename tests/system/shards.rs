//! Tenant-sharded stores end to end: two real PostgreSQL clusters (this
//! machine's on 5432, and a second one `tests/local-shard.sh` makes on
//! 5434; `.ci/run` runs it), one `serve` over both, a worker per store, the
//! demo agent, and clients of two tenants over HTTP+JSON. Each tenant's
//! tasks, plans' children and webhooks stay on its store; either store
//! down (or cut off), the other's tenant is served, and the down one's is
//! refused cleanly until it is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_engine::{Store, StoreConfig};

use crate::api::message;
use crate::harness::{TestDb, eventually, other_cluster};
use crate::processes::{free_port, http_get, switchyard};
use crate::proxy::Proxy;

const WAIT: Duration = Duration::from_secs(60);

/// The second cluster's URL (`SWITCHYARD_TEST_SHARD_URL`, else port 5434).
async fn shard_url(db: &TestDb) -> Option<String> {
    other_cluster(db, "SWITCHYARD_TEST_SHARD_URL", 5434, false, "tests/local-shard.sh").await
}

/// The test's schema on the second cluster, dropped when the test ends.
struct ShardSchema {
    store: Store,
    schema: String,
}

impl Drop for ShardSchema {
    fn drop(&mut self) {
        let (pool, schema) = (self.store.pg_pool().expect("PostgreSQL").clone(), self.schema.clone());
        // Best effort, on a thread of its own: the test's runtime is ending.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
            });
        })
        .join()
        .ok();
    }
}

/// Where webhooks land, by tenant.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<(String, Value)>>>);

impl Hooks {
    async fn start() -> (Hooks, String) {
        let hooks = Hooks::default();
        let app = axum::Router::new()
            .route(
                "/hook/{tenant}",
                axum::routing::post(
                    |axum::extract::State(hooks): axum::extract::State<Hooks>,
                     axum::extract::Path(tenant): axum::extract::Path<String>,
                     body: String| async move {
                        let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                        hooks.0.lock().expect("hooks").push((tenant, body));
                        axum::http::StatusCode::OK
                    },
                ),
            )
            .with_state(hooks.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hooks, base)
    }

    /// Whether `tenant`'s hook was told that `task` completed.
    fn told(&self, tenant: &str, task: &str) -> bool {
        self.0.lock().expect("hooks").iter().any(|(t, body)| {
            let update = &body["statusUpdate"];
            t == tenant && update["taskId"] == task && update["status"]["state"] == "TASK_STATE_COMPLETED"
        })
    }
}

/// A client of one tenant, over HTTP+JSON (`/{tenant}/…`).
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// The status and body of a request.
    async fn call(&self, method: reqwest::Method, tenant: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}/{tenant}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, tenant: &str, message: Value, configuration: Value) -> (u16, Value) {
        let body = json!({ "message": message, "configuration": configuration });
        self.call(reqwest::Method::POST, tenant, "/message:send", Some(body)).await
    }

    /// Sends `text` and waits for the answer; the task.
    async fn completes(&self, tenant: &str, text: &str) -> Value {
        let (status, body) = self.send(tenant, message(text), json!({})).await;
        assert_eq!(status, 200, "{tenant}: {text}: {body}");
        assert_eq!(body["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{tenant}: {text}: {body}");
        body["task"].clone()
    }

    async fn get(&self, tenant: &str, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, tenant, &format!("/tasks/{id}"), None).await
    }
}

/// Tasks with this id on a store, and children of it.
async fn rows(store: &Store, id: &str) -> (i64, i64) {
    let pool = store.pg_pool().expect("PostgreSQL");
    let id: uuid::Uuid = id.parse().expect("a task id");
    let one = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(pool).await.expect("count")
    };
    (
        one("SELECT count(*) FROM tasks WHERE id = $1").await,
        one("SELECT count(*) FROM tasks WHERE parent_id = $1").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_serve_their_own_tenants_and_either_serves_with_the_other_down() {
    let Some(db) = TestDb::new().await else { return };
    let Some(shard) = shard_url(&db).await else { return };
    let eu = {
        let config = StoreConfig { schema: db.schema.clone(), ..StoreConfig::new(shard.clone()) };
        ShardSchema { store: Store::connect(&config).await.expect("the second cluster"), schema: db.schema.clone() }
    };
    // Every process reaches each store through a proxy that can take it down.
    let (home, away) = (Proxy::start(&db.url).await, Proxy::start(&shard).await);
    let (home_url, away_url) = (home.url(&db.url), away.url(&shard));
    let stores = format!("eu={away_url}");
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env("DATABASE_URL", &home_url)
            .env("SWITCHYARD_STORE_URLS", &stores)
            .env("SWITCHYARD_TENANT_STORES", "globex=eu initech=eu");
    };

    // One migrate covers every store.
    let mut migrate = switchyard(&db, &["migrate"]);
    env(&mut migrate);
    let migrated = migrate.output().await.expect("migrate");
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'tasks'")
            .bind(&db.schema)
            .fetch_one(eu.store.pg_pool().expect("PostgreSQL"))
            .await
            .expect("tables");
    assert_eq!(tables, 1, "migrate made the schema on the second store too");

    let agent_port = free_port();
    let agent = format!("127.0.0.1:{agent_port}");
    let mut processes =
        vec![switchyard(&db, &["demo-agent", "--listen", &agent, "--pause", "0ms"]).spawn().expect("agent")];
    let config = std::env::temp_dir().join(format!("{}-shards.toml", db.schema));
    std::fs::write(
        &config,
        format!(
            "default_agent = \"a\"\n[[agents]]\nname = \"a\"\nurl = \"http://{agent}\"\n[[agents]]\nname = \"b\"\n\
             url = \"http://{agent}\"\n[[plans]]\nname = \"both\"\nfanout = [\"a\", \"b\"]\n[push]\nallow = [\"127.0.0.0/8\"]\n"
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]);
    env(&mut serve);
    processes.push(serve.spawn().expect("serve"));
    for (id, store) in [("w-default", "default"), ("w-eu", "eu")] {
        let mut worker = switchyard(
            &db,
            &["worker", "--config", &config, "--store", store, "--worker-id", id, "--poll-interval", "200ms"],
        );
        env(&mut worker);
        processes.push(worker.spawn().expect("worker"));
    }
    eventually(WAIT, "api, both stores and the agent up", || async {
        let ready = http_get(port, "/readyz").await;
        ready.is_some_and(|(status, body)| {
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            status == 200 && body["stores"]["default"]["status"] == "ready" && body["stores"]["eu"]["status"] == "ready"
        }) && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    // An API key of a tenant on the further store (keys live on "default").
    let mut keys = switchyard(&db, &["keys", "create", "--tenant", "globex", "--principal", "gail"]);
    env(&mut keys);
    let created = keys.output().await.expect("keys create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key = String::from_utf8_lossy(&created.stdout).lines().last().expect("the key").trim().to_owned();
    let client = Client {
        http: reqwest::Client::builder().timeout(WAIT).build().expect("client"),
        base: format!("http://{listen}"),
    };
    let (hooks, hooks_base) = Hooks::start().await;

    // Each tenant on its store: a task, a plan with its children, a
    // cancel and a webhook, and nothing of it on the other store.
    let mut first = std::collections::HashMap::new();
    for (tenant, own, other) in [("acme", &db.store, &eu.store), ("globex", &eu.store, &db.store)] {
        let task = client.completes(tenant, &format!("echo hello {tenant}")).await;
        let id = task["id"].as_str().expect("id");
        first.insert(tenant, id.to_owned());
        assert_eq!(task["artifacts"][0]["parts"][0]["text"], format!("hello {tenant}"), "{task}");
        assert_eq!(rows(own, id).await.0, 1, "{tenant}'s task on its store");
        assert_eq!(rows(other, id).await.0, 0, "{tenant}'s task not on the other store");
        let (status, _) = client.get(tenant, id).await;
        assert_eq!(status, 200);
        // Another tenant, on the other store or on the same, never sees it.
        for stranger in ["acme", "globex", "initech"].into_iter().filter(|t| *t != tenant) {
            let (status, body) = client.get(stranger, id).await;
            assert_eq!(status, 404, "{stranger} reading {tenant}'s task: {body}");
        }

        let mut planned = message("echo planned");
        planned["metadata"] = json!({"switchyard": {"skill": "both"}});
        let (status, body) = client.send(tenant, planned, json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
        let parent = body["task"]["id"].as_str().expect("id");
        assert_eq!(rows(own, parent).await, (1, 2), "{tenant}'s plan and its two children on its store");
        assert_eq!(rows(other, parent).await, (0, 0), "nothing of {tenant}'s plan on the other store");

        let (status, body) = client.send(tenant, message("sleep 60000"), json!({"returnImmediately": true})).await;
        assert_eq!(status, 200, "{body}");
        let long = body["task"]["id"].as_str().expect("id").to_owned();
        eventually(WAIT, "the long task working", || async {
            client.get(tenant, &long).await.1["status"]["state"] == "TASK_STATE_WORKING"
        })
        .await;
        let (status, body) =
            client.call(reqwest::Method::POST, tenant, &format!("/tasks/{long}:cancel"), Some(json!({}))).await;
        assert_eq!((status, &body["status"]["state"]), (200, &json!("TASK_STATE_CANCELED")), "{body}");

        let hook = json!({"returnImmediately": true,
                          "taskPushNotificationConfig": {"url": format!("{hooks_base}/hook/{tenant}"), "token": "t"}});
        let (status, body) = client.send(tenant, message("echo hooked"), hook).await;
        assert_eq!(status, 200, "{body}");
        let hooked = body["task"]["id"].as_str().expect("id").to_owned();
        eventually(WAIT, "the webhook told", || async { hooks.told(tenant, &hooked) }).await;

        // ListTasks: this tenant's, from its store only.
        let (status, body) = client.call(reqwest::Method::GET, tenant, "/tasks?pageSize=100", None).await;
        assert_eq!(status, 200, "{body}");
        let listed: Vec<&str> =
            body["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_str()).collect();
        assert_eq!(listed.len(), 4, "{tenant}: its echo, plan, cancel and webhook tasks: {body}");
        assert!([id, parent, long.as_str(), hooked.as_str()].iter().all(|t| listed.contains(t)), "{body}");
    }

    // The console shows one store at a time, switched in its header, in a
    // real browser; a task's page finds its task on whichever store holds it.
    if let Some(browser) = crate::browser::Browser::start().await {
        let console = format!("http://{listen}/console");
        browser.goto(&format!("{console}/tasks")).await;
        let text = browser.wait_for_text(WAIT, "the default store's tasks", |t| t.contains("acme")).await;
        assert!(!text.contains("globex"), "only the default store's tenants: {text}");
        let switch = browser.find("nav.stores a[href^='/console/store/eu']").await;
        browser.click(&switch).await;
        let text = browser.wait_for_text(WAIT, "the eu store's tasks", |t| t.contains("globex")).await;
        assert!(!text.contains("acme"), "only the eu store's tenants: {text}");
        assert!(browser.url().await.ends_with("/console/tasks"), "back on the page it was switched from");
        let current = browser.find("nav.stores a[aria-current]").await;
        let label = browser.script("return document.querySelector('nav.stores a[aria-current]').textContent").await;
        assert_eq!(label, "eu", "{current:?}");
        // A default store's task, reached by its link while eu is chosen.
        browser.goto(&format!("{console}/tasks/{}", first["acme"])).await;
        browser.wait_for_text(WAIT, "acme's task page", |t| t.contains("acme /") && t.contains("Tenant")).await;
        browser.close().await;
    }

    // The key works (and is remembered as verified).
    let warmed = client
        .http
        .post(format!("{}/message:send", client.base))
        .header("x-api-key", &key)
        .json(&json!({"message": message("echo keyed")}))
        .send()
        .await
        .expect("send");
    assert_eq!(warmed.status(), 200);

    // A remote agent's push names the store its task lives on: the token
    // a globex delegation registered is checked on the eu store (and found
    // nowhere else); a store this api does not serve is refused like a
    // wrong token.
    let delegated: switchyard_engine::TaskId = first["globex"].parse().expect("a task id");
    eu.store.delegation_set_push_token(delegated, "the-token").await.expect("token");
    let push = |query: &'static str| {
        let http = client.http.clone();
        let url = format!("http://{listen}/_switchyard/push/{delegated}{query}");
        async move { http.post(url).header("x-a2a-notification-token", "the-token").send().await.expect("push").status() }
    };
    assert_eq!(push("?store=eu").await, 200, "the push reaches the eu store's delegation");
    assert_eq!(push("").await, 401, "the default store holds no such delegation");
    assert_eq!(push("?store=nowhere").await, 401);

    // Either store down: the other's tenant is served as before; the down
    // one's tenant is refused as unavailable (503, never lost nor hung),
    // and served again once its store is back.
    for (down, served, refused) in [(&away, "acme", "globex"), (&home, "globex", "acme")] {
        down.down();
        let started = std::time::Instant::now();
        let (status, body) = client.send(refused, message("echo while down"), json!({})).await;
        assert_eq!(status, 503, "{refused} while its store is down: {body}");
        assert_eq!(body["error"]["status"], "UNAVAILABLE", "{body}");
        assert!(started.elapsed() < Duration::from_secs(20), "refused in time: {:?}", started.elapsed());
        client.completes(served, "echo the other store serves").await;
        if refused == "acme" {
            // The keys' store is down: a key it verified lately still
            // admits its holder (whose tenant is on the store that is up);
            // one it never verified cannot be checked, and is refused 503.
            let with_key = |key: String| {
                let http = client.http.clone();
                let url = format!("{}/message:send", client.base);
                async move {
                    let body = json!({"message": message("echo with a key")});
                    let response = http.post(url).header("x-api-key", key).json(&body).send().await.expect("send");
                    (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
                }
            };
            let (status, body) = with_key(key.clone()).await;
            assert_eq!(status, 200, "a key verified before the outage: {body}");
            assert_eq!(body["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
            assert_eq!(rows(&eu.store, body["task"]["id"].as_str().expect("id")).await.0, 1, "on globex's store");
            let (status, body) = with_key("sy_0123456789ab_abcdefghijklmnopqrstuvwxyz012345".into()).await;
            assert_eq!(status, 503, "a key never verified, while the keys' store is down: {body}");
        }
        let (status, body) = http_get(port, "/readyz").await.expect("readyz");
        assert_eq!(status, 200, "an api with one store up is ready: {body}");
        let metrics = http_get(port, "/metrics").await.expect("metrics").1;
        let down_name = if refused == "globex" { "eu" } else { "default" };
        assert!(metrics.contains(&format!("switchyard_store_up{{store=\"{down_name}\"}} 0")), "{metrics}");
        down.up();
        eventually(WAIT, "served again once its store is back", || async {
            let (status, body) = client.send(refused, message("echo back"), json!({})).await;
            status == 200 && body["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        })
        .await;
    }

    // Partitioned — every packet held, nothing refused, the worst kind of
    // down: the store's tenant is answered 503 within the api's deadline
    // on a store's work (not held until TCP gives up), the other store's
    // tenant is served meanwhile, and after the partition heals the first
    // is served again.
    away.cut();
    let started = std::time::Instant::now();
    let (status, body) = client.get("globex", &first["globex"]).await;
    assert_eq!(status, 503, "globex during the partition: {body}");
    assert!(started.elapsed() < Duration::from_secs(25), "answered within the deadline: {:?}", started.elapsed());
    client.completes("acme", "echo during the partition").await;
    away.heal();
    eventually(WAIT, "globex served after the partition", || async {
        client.get("globex", &first["globex"]).await.0 == 200
    })
    .await;
    // Accepted at once; done once the eu store's worker, whose own
    // connections were cut too, has found its feet (its lease and session
    // limits decide how soon, not the api).
    let (status, body) =
        client.send("globex", message("echo after the partition"), json!({"returnImmediately": true})).await;
    assert_eq!(status, 200, "{body}");
    let after = body["task"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the task sent after the partition completed", || async {
        client.get("globex", &after).await.1["status"]["state"] == "TASK_STATE_COMPLETED"
    })
    .await;

    // The operator's view covers every store.
    let mut list = switchyard(&db, &["tasks", "list", "--limit", "100"]);
    env(&mut list);
    let listed = list.output().await.expect("tasks list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("STORE"), "{listed}");
    for tenant in ["acme", "globex"] {
        assert!(listed.lines().any(|l| l.contains(tenant)), "{tenant} in: {listed}");
    }
    assert!(listed.lines().any(|l| l.contains("globex") && l.contains(" eu ")), "{listed}");
    drop(processes);
}
