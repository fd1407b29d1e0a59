//! The console in a real browser: headless Chromium against real `serve`,
//! `worker` and demo agent processes on PostgreSQL, with tasks made through
//! A2A (the official Python client among them).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::api::{message, rpc_call};
use crate::browser::{Browser, ENTER, TAB};
use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, quick_worker, switchyard};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "console-admin-s3cret";

struct Stack {
    db: TestDb,
    port: u16,
    /// Where the agent `down` would be, were it up.
    down: u16,
    agent: String,
    http: reqwest::Client,
    _processes: Vec<Child>,
}

impl Stack {
    /// A demo agent that pauses between chunks, an agent nobody serves
    /// (`down`), `serve` with an admin token and one attempt per
    /// delegation (so `down`'s tasks die at once), and a worker.
    async fn start(extra_serve: &[&str]) -> Option<Stack> {
        let db = TestDb::new().await?;
        let agent_port = free_port();
        let agent_listen = format!("127.0.0.1:{agent_port}");
        let agent =
            switchyard(&db, &["demo-agent", "--listen", &agent_listen, "--pause", "300ms"]).spawn().expect("agent");
        let down = free_port();
        let config = std::env::temp_dir().join(format!("{}-console.toml", db.schema));
        std::fs::write(
            &config,
            format!(
                "default_agent = \"demo\"\n[[agents]]\nname = \"demo\"\nurl = \"http://{agent_listen}\"\n\
                 [[agents]]\nname = \"down\"\nurl = \"http://127.0.0.1:{down}\"\n\
                 [[plans]]\nname = \"both\"\nfanout = [\"demo\", \"demo\"]\njoin = \"all\"\n"
            ),
        )
        .expect("config");
        let config = config.to_string_lossy().into_owned();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args =
            vec!["serve", "--listen", &listen, "--config", &config, "--max-attempts", "1", "--admin-token", TOKEN];
        args.extend_from_slice(extra_serve);
        let serve = switchyard(&db, &args).spawn().expect("serve");
        let worker = quick_worker(&db, &config, "w1", &["--retry-base", "50ms", "--retry-cap", "100ms"]);
        eventually(WAIT, "api and agent up", || async {
            http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
                && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
        })
        .await;
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        Some(Stack {
            db,
            port,
            down,
            agent: format!("http://{agent_listen}/"),
            http,
            _processes: vec![agent, serve, worker],
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `text` without waiting (to `agent`, if named); the task's id.
    async fn send(&self, text: &str, agent: Option<&str>) -> String {
        self.send_traced(text, agent, None).await
    }

    /// As [`Stack::send`], continuing the caller's W3C trace if given.
    async fn send_traced(&self, text: &str, agent: Option<&str>, traceparent: Option<&str>) -> String {
        let mut msg = message(text);
        if let Some(agent) = agent {
            let key = if agent.starts_with("plan:") { "skill" } else { "agent" };
            msg["metadata"] = json!({"switchyard": {key: agent.trim_start_matches("plan:")}});
        }
        let params = json!({"message": msg, "configuration": {"returnImmediately": true}});
        let mut headers = vec![("A2A-Version", "1.0")];
        if let Some(traceparent) = traceparent {
            headers.push(("traceparent", traceparent));
        }
        let answer = rpc_call(&self.http, &self.url("/"), "SendMessage", params, &headers).await;
        answer["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
    }

    async fn state(&self, task: &str) -> String {
        sqlx::query_scalar("SELECT state FROM tasks WHERE id = $1::uuid")
            .bind(task)
            .fetch_one(self.db.pool())
            .await
            .expect("state")
    }
}

/// A task's context id, as the store holds it.
async fn context_of(stack: &Stack, task: &str) -> String {
    sqlx::query_scalar("SELECT context_id FROM tasks WHERE id = $1::uuid")
        .bind(task)
        .fetch_one(stack.db.pool())
        .await
        .expect("context")
}

/// A form body, as a browser encodes one.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |v: &str| {
        v.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

/// Signs in through the form with the keyboard alone: the credential, then Enter.
async fn sign_in(browser: &Browser, stack: &Stack, credential: &str) {
    browser.goto(&stack.url("/console")).await;
    let field = browser.find("#credential").await;
    browser.type_into(&field, &format!("{credential}{ENTER}")).await;
}

/// Saves a screenshot of the page under `target/console-screenshots/` and
/// checks it is not blank: a page with content compresses far worse than
/// an empty one.
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(format!("{name}.png")), &png).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    assert!(png.len() > 15_000, "{name}: the screenshot looks blank ({} bytes)", png.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_follows_and_acts_on_tasks_in_a_real_browser() {
    let Some(stack) = Stack::start(&["--trace-url", "http://traces.example/trace/{trace_id}"]).await else { return };
    let Some(browser) = Browser::start().await else { return };

    // Tasks made through A2A: one by the official Python client, one that
    // asks a question, one that runs until canceled, one for an agent that
    // is down (its job dies), one running a plan.
    let python = tokio::task::spawn_blocking(crate::interop::python_sdk).await.expect("venv");
    let report = crate::interop::run_script(
        &stack.db,
        python,
        "python_send.py",
        &[&stack.url("/"), "echo from the python client"],
    )
    .await;
    let from_python = report[0]["task_id"].as_str().expect("python task").to_owned();
    let asking = stack.send("ask", None).await;
    let hanging = stack.send("hang", None).await;
    let dead = stack.send("echo never", Some("down")).await;
    let planned = stack.send("echo both ways", Some("plan:both")).await;
    eventually(WAIT, "the tasks settled", || async {
        stack.state(&asking).await == "input_required"
            && stack.state(&hanging).await == "working"
            && stack.state(&dead).await == "failed"
            && stack.state(&from_python).await == "completed"
            && stack.state(&planned).await == "completed"
    })
    .await;

    // Not signed in: the sign-in form. A wrong credential is refused there;
    // the admin token is typed and sent with the keyboard alone.
    browser.goto(&stack.url("/console/tasks")).await;
    assert!(browser.url().await.contains("/console/login"), "{}", browser.url().await);
    screenshot(&browser, "sign-in").await;
    sign_in(&browser, &stack, "not-the-token").await;
    browser.wait_for_text(WAIT, "the refusal", |t| t.contains("Not signed in")).await;
    sign_in(&browser, &stack, TOKEN).await;
    let overview = browser.wait_for_text(WAIT, "the overview", |t| t.contains("Tasks by state")).await;
    assert!(overview.contains("1 dead job"), "the dead job is an alert: {overview}");
    assert!(overview.contains("input-required"), "{overview}");
    screenshot(&browser, "overview").await;
    // The session cookie is out of scripts' reach.
    assert_eq!(browser.script("return document.cookie").await, json!(""));

    // Find the failed task from the overview, see why and which agent,
    // and requeue its dead job, all from the browser.
    browser.click(&browser.find("a[href='/console/tasks?state=failed']").await).await;
    browser.wait_for_text(WAIT, "the failed tasks", |t| t.contains(&dead[..13])).await;
    browser.click(&browser.find(&format!("a[href='/console/tasks/{dead}']")).await).await;
    let failed = browser.wait_for_text(WAIT, "the failed task's page", |t| t.contains("Jobs and attempts")).await;
    assert!(failed.contains("down"), "which agent: {failed}");
    assert!(failed.contains("connection refused") || failed.contains("could not connect"), "why: {failed}");
    screenshot(&browser, "failed-task").await;
    // The agent comes up; the requeued job runs (and finds its task ended).
    let _revived =
        switchyard(&stack.db, &["demo-agent", "--listen", &format!("127.0.0.1:{}", stack.down), "--pause", "0ms"])
            .spawn()
            .expect("agent");
    browser.click(&browser.find("form[action$='/requeue'] button").await).await;
    eventually(WAIT, "the requeued job ran", || async {
        let states: Vec<(String, i32)> =
            sqlx::query_as("SELECT state, attempt FROM jobs WHERE task_id = $1::uuid AND kind = 'delegate'")
                .bind(&dead)
                .fetch_all(stack.db.pool())
                .await
                .expect("jobs");
        states.iter().all(|(s, attempt)| s == "done" && *attempt >= 1) && !states.is_empty()
    })
    .await;

    // The list: every task, newest first; each filter narrows it as the
    // store says.
    browser.goto(&stack.url("/console/tasks")).await;
    let list = browser.wait_for_text(WAIT, "the list", |t| t.contains(&from_python[..13])).await;
    for task in [&asking, &hanging, &dead, &planned] {
        assert!(list.contains(&task[..13]), "{task} listed: {list}");
    }
    screenshot(&browser, "tasks").await;
    let filters = [
        ("state=input_required".to_owned(), vec![asking.clone()]),
        ("agent=down".to_owned(), vec![dead.clone()]),
        ("plan=both".to_owned(), vec![planned.clone()]),
        (format!("id={}", &hanging[..30]), vec![hanging.clone()]),
        (format!("context={}", context_of(&stack, &asking).await), vec![asking.clone()]),
        ("since=2099-01-01T00:00".to_owned(), vec![]),
        ("tenant=nobody".to_owned(), vec![]),
    ];
    for (query, expected) in &filters {
        browser.goto(&stack.url(&format!("/console/tasks?{query}"))).await;
        browser.find("#task-rows").await;
        let shown: Vec<String> = browser
            .script("return [...document.querySelectorAll('#task-rows a.id')].map(a => a.title)")
            .await
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let shown: Vec<String> = shown.into_iter().filter(|id| !id.is_empty()).collect();
        assert!(expected.iter().all(|e| shown.contains(e)), "{query}: {shown:?}");
        let others: Vec<&String> = shown.iter().filter(|id| !expected.contains(id)).collect();
        assert!(others.is_empty(), "{query} shows others: {shown:?}");
    }
    // The filter form, used as a person would.
    browser.goto(&stack.url("/console/tasks")).await;
    browser.type_into(&browser.find("form.filters input[name=agent]").await, &format!("down{ENTER}")).await;
    browser.wait_for_text(WAIT, "the form's filter", |t| t.contains(&dead[..13]) && !t.contains(&asking[..13])).await;

    // A new task appears on the open first page without a reload.
    browser.goto(&stack.url("/console/tasks")).await;
    browser.find("#task-rows").await;
    browser.script("window.stillTheSamePage = true").await;
    let fresh = stack.send("echo fresh", None).await;
    browser.wait_for_text(WAIT, "the new task in the list", |t| t.contains(&fresh[..13])).await;
    assert_eq!(browser.script("return window.stillTheSamePage === true").await, json!(true), "no reload");

    // A streamed task's page follows it live to its end, artifacts joined.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let streamed = stack.send_traced("stream 6", None, Some(&format!("00-{trace}-00f067aa0ba902b7-01"))).await;
    browser.goto(&stack.url(&format!("/console/tasks/{streamed}"))).await;
    browser.find("#live").await;
    browser.script("window.stillTheSamePage = true").await;
    let page =
        browser.wait_for_text(WAIT, "the task to complete on the page", |t| t.contains("completed: streamed")).await;
    assert!(page.contains("chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;chunk 5;"), "the chunks, joined: {page}");
    assert_eq!(browser.script("return window.stillTheSamePage === true").await, json!(true), "followed, not reloaded");
    for section in ["Conversation", "Artifacts", "Timeline", "Jobs and attempts", "Audit trail", "remote task"] {
        assert!(page.contains(section), "{section} on the task page: {page}");
    }
    let rows = browser.all("table.timeline tbody tr").await.len();
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM task_events WHERE task_id = $1::uuid")
        .bind(&streamed)
        .fetch_one(stack.db.pool())
        .await
        .expect("count");
    assert_eq!(rows as i64, logged, "the timeline is the log");
    // Its trace, through the configured link template.
    browser.find("a[href^='http://traces.example/trace/']").await;
    let linked =
        browser.script("return document.querySelector(\"a[href^='http://traces.example/trace/']\").innerText").await;
    assert_eq!(linked, json!(trace), "the caller's trace");
    screenshot(&browser, "task").await;

    // The plan's tree: both children, each a link with its state.
    browser.goto(&stack.url(&format!("/console/tasks/{planned}"))).await;
    browser.find("ol.children").await;
    let children =
        browser.script("return [...document.querySelectorAll('ol.children li')].map(li => li.innerText)").await;
    let children: Vec<&str> = children.as_array().expect("children").iter().filter_map(Value::as_str).collect();
    assert_eq!(children.len(), 2, "a fan-out of two: {children:?}");
    for text in &children {
        assert!(text.contains("completed") && text.contains("demo"), "{text}");
    }
    screenshot(&browser, "plan").await;

    // The Python client's task: its conversation as sent.
    browser.goto(&stack.url(&format!("/console/tasks/{from_python}"))).await;
    browser.wait_for_text(WAIT, "the python task", |t| t.contains("echo from the python client")).await;

    // The question, answered in the page: it reaches the agent once and the
    // task completes while the page watches.
    browser.goto(&stack.url(&format!("/console/tasks/{asking}"))).await;
    browser.wait_for_text(WAIT, "the question", |t| t.contains("what is your answer?")).await;
    let answer = browser.find("#answer-text").await;
    browser.type_into(&answer, "forty-two").await;
    browser.click(&browser.find("form.answer button").await).await;
    browser
        .wait_for_text(WAIT, "the answer on the page", |t| t.contains("answer: forty-two") && t.contains("completed"))
        .await;
    assert_eq!(stack.state(&asking).await, "completed");
    let answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_events WHERE task_id = $1::uuid AND kind = 'message' AND payload::text LIKE '%forty-two%'",
    )
    .bind(&asking)
    .fetch_one(stack.db.pool())
    .await
    .expect("count");
    assert_eq!(answers, 1, "the answer was sent once");
    let remote: String = sqlx::query_scalar("SELECT remote_task_id FROM delegations WHERE task_id = $1::uuid")
        .bind(&asking)
        .fetch_one(stack.db.pool())
        .await
        .expect("remote id");
    let at_agent =
        rpc_call(&stack.http, &stack.agent, "GetTask", json!({"id": remote}), &[("A2A-Version", "1.0")]).await;
    let answered: Vec<&Value> = at_agent["result"]["artifacts"]
        .as_array()
        .map(|a| a.iter().filter(|a| a.to_string().contains("answer: forty-two")).collect())
        .unwrap_or_default();
    assert_eq!(answered.len(), 1, "the agent got the answer once: {at_agent}");

    // Cancel the hanging task (the button asks first; the test says yes):
    // canceled here, and at the agent.
    browser.goto(&stack.url(&format!("/console/tasks/{hanging}"))).await;
    browser.click(&browser.find("form[action$='/cancel'] button").await).await;
    browser.accept_prompt().await;
    eventually(WAIT, "the task canceled", || async { stack.state(&hanging).await == "canceled" }).await;
    let canceled = browser.wait_for_text(WAIT, "canceled on the page", |t| t.contains("canceled by admin")).await;
    assert!(canceled.contains("task.cancel"), "audited: {canceled}");
    let remote: String = sqlx::query_scalar("SELECT remote_task_id FROM delegations WHERE task_id = $1::uuid")
        .bind(&hanging)
        .fetch_one(stack.db.pool())
        .await
        .expect("remote id");
    eventually(WAIT, "the agent's task canceled", || async {
        let answer =
            rpc_call(&stack.http, &stack.agent, "GetTask", json!({"id": remote}), &[("A2A-Version", "1.0")]).await;
        answer["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    })
    .await;

    // Queues and plans.
    browser.goto(&stack.url("/console/queues")).await;
    browser.wait_for_text(WAIT, "the queue page", |t| t.contains("Jobs by kind and state")).await;
    screenshot(&browser, "queues").await;
    browser.goto(&stack.url("/console/plans")).await;
    browser.wait_for_text(WAIT, "the plans page", |t| t.contains("both") && t.contains(&planned[..13])).await;

    // Agents: the card and the breaker; one added and removed.
    browser.goto(&stack.url("/console/agents")).await;
    let agents = browser.wait_for_text(WAIT, "the agents", |t| t.contains("Consecutive failures")).await;
    assert!(agents.contains("demo") && agents.contains("down") && agents.contains("Repeats, streams"), "{agents}");
    screenshot(&browser, "agents").await;
    browser.type_into(&browser.find("form.add input[name=name]").await, "extra").await;
    browser.type_into(&browser.find("form.add input[name=url]").await, "http://127.0.0.1:9/a2a").await;
    browser.click(&browser.find("form.add button").await).await;
    browser.wait_for_text(WAIT, "the added agent", |t| t.contains("http://127.0.0.1:9/a2a")).await;
    browser.click(&browser.find("form[action='/console/agents/extra/remove'] button").await).await;
    browser.accept_prompt().await;
    browser.wait_for_text(WAIT, "the agent removed", |t| !t.contains("http://127.0.0.1:9/a2a")).await;

    // Keyboard alone: the first Tab reaches the skip link, Enter follows it.
    browser.goto(&stack.url("/console/tasks")).await;
    browser.find("#main").await;
    browser.press(TAB).await;
    assert_eq!(browser.script("return document.activeElement.className").await, json!("skip"));
    browser.press(ENTER).await;
    assert_eq!(browser.script("return document.activeElement.id").await, json!("main"));

    // A phone's width: nothing wider than the screen but the scrolling tables.
    browser.set_size(390, 844).await;
    for path in
        ["/console", "/console/tasks", &format!("/console/tasks/{streamed}"), "/console/agents", "/console/queues"]
    {
        browser.goto(&stack.url(path)).await;
        browser.find("#main").await;
        let overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().is_some_and(|o| o <= 0), "{path} overflows a phone's width by {overflow}px");
    }
    screenshot(&browser, "task-list-phone").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_refuse_forged_requests_and_the_console_can_be_off() {
    let Some(stack) = Stack::start(&["--max-streams-per-principal", "1"]).await else { return };
    let hanging = stack.send("hang", None).await;
    // Running at its agent before anything is tried on it, so that "not
    // canceled" below reads one state whatever the machine's load.
    eventually(WAIT, "the hanging task working", || async { stack.state(&hanging).await == "working" }).await;
    // Signed in over HTTP as a browser would be: the session cookie.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let signed_in = http
        .post(stack.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("credential", TOKEN), ("next", "/console/tasks")]))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/console/tasks");
    let cookie = signed_in.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = http
        .get(stack.url(&format!("/console/tasks/{hanging}")))
        .header("cookie", &session)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let csrf =
        html.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a token").to_owned();
    let cancel = stack.url(&format!("/console/tasks/{hanging}/cancel"));

    // A live page is a stream: one is allowed here, a second is refused
    // (429) until the first closes.
    let live = stack.url(&format!("/console/tasks/{hanging}/live"));
    let first = http.get(&live).header("cookie", &session).send().await.expect("live");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    let second = http.get(&live).header("cookie", &session).send().await.expect("live");
    assert_eq!(second.status(), 429);
    drop(first);

    // A form without this session's token, or from another site, is refused.
    let refused = http
        .post(&cancel)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "forged")]))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 403);
    let cross = http
        .post(&cancel)
        .header("cookie", &session)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), 403);
    // Without the cookie (another site's page cannot send it): sign in first.
    let anonymous = http
        .post(&cancel)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .expect("post");
    assert!(
        anonymous.status().is_redirection()
            && anonymous.headers()["location"].to_str().expect("loc").contains("/console/login")
    );
    assert_eq!(stack.state(&hanging).await, "working", "nothing was canceled");
    // A tampered session is no session.
    let tampered = format!("{}x", session);
    let page = http.get(stack.url("/console/tasks")).header("cookie", tampered).send().await.expect("page");
    assert!(page.status().is_redirection());
    // With the token, from the console itself: canceled.
    let done = http
        .post(&cancel)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .expect("post");
    assert_eq!(done.status(), 303);
    assert_eq!(stack.state(&hanging).await, "canceled");
    // Bad input is a clear client error, never a server error.
    for path in ["/console/tasks/not-a-uuid", "/console/tasks?state=done", "/console/tasks?id=xyz"] {
        let answer = http.get(stack.url(path)).header("cookie", &session).send().await.expect("get");
        assert_eq!(answer.status(), 400, "{path}");
    }
    let missing = http
        .get(stack.url(&format!("/console/tasks/{}", uuid::Uuid::now_v7())))
        .header("cookie", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);

    // A key without the admin scope is refused at the sign-in.
    let created = switchyard(&stack.db, &["keys", "create", "--tenant", "acme", "--principal", "ann"])
        .output()
        .await
        .expect("keys create");
    let key = String::from_utf8_lossy(&created.stdout).lines().last().expect("a key").trim().to_owned();
    let refused = http
        .post(stack.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("credential", &key)]))
        .send()
        .await
        .expect("sign in");
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("set-cookie").is_none(), "no session for it");
    assert!(refused.text().await.expect("html").contains("Not allowed"), "says why");

    // An expired session is no session (an api whose sign-ins last 2 s).
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _short =
        switchyard(&stack.db, &["serve", "--listen", &listen, "--admin-token", TOKEN, "--console-session", "2s"])
            .spawn()
            .expect("serve");
    eventually(WAIT, "the short-session api up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
    })
    .await;
    let short = format!("http://127.0.0.1:{port}");
    let signed_in = http
        .post(format!("{short}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("credential", TOKEN)]))
        .send()
        .await
        .expect("sign in");
    let session =
        signed_in.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_owned();
    let fresh = http.get(format!("{short}/console/tasks")).header("cookie", &session).send().await.expect("page");
    assert_eq!(fresh.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stale = http.get(format!("{short}/console/tasks")).header("cookie", &session).send().await.expect("page");
    assert!(stale.status().is_redirection(), "an expired session is sent to sign in: {}", stale.status());

    // `--console false`: no console at all.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _off = switchyard(&stack.db, &["serve", "--listen", &listen, "--console", "false"]).spawn().expect("serve");
    eventually(WAIT, "the second api up", || async { http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200) })
        .await;
    let (status, _) = http_get(port, "/console").await.expect("answer");
    assert_eq!(status, 404);
}

/// The console's reads, on both drivers: every tenant's tasks, newest
/// first, each filter, keyset pages, the labels and counts, and a dead
/// job discarded.
async fn the_consoles_reads_filter_and_page_every_tenants_tasks(db: TestDb) {
    use switchyard_engine::{Caller, ConsoleFilter, NewTask, TaskId, TaskState, id_range};

    let store = &db.store;
    let before_any = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let mut ids: Vec<TaskId> = Vec::new();
    for (i, tenant) in ["acme", "acme", "globex", "acme", "globex"].iter().enumerate() {
        let new = NewTask::new(Caller::new(*tenant, "alice"), crate::harness::user_message(&format!("task {i}")));
        ids.push(store.task_submit(new).await.expect("submit").task.id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // The newest first, across tenants.
    let all = store.console_tasks(&ConsoleFilter::default(), None, 10).await.expect("list");
    let listed: Vec<TaskId> = all.iter().map(|t| t.task.id).collect();
    assert_eq!(listed, ids.iter().rev().copied().collect::<Vec<_>>());
    // Pages of two, by keyset, meet every task once.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.console_tasks(&ConsoleFilter::default(), before, 2).await.expect("page");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|t| t.task.id);
        paged.extend(page.into_iter().map(|t| t.task.id));
    }
    assert_eq!(paged, listed);
    // Tenant, state, context.
    let globex = ConsoleFilter { tenant: Some("globex".into()), ..ConsoleFilter::default() };
    assert_eq!(store.console_tasks(&globex, None, 10).await.expect("list").len(), 2);
    store.task_cancel(&Caller::new("acme", "alice"), ids[0], None).await.expect("cancel");
    let canceled = ConsoleFilter { state: Some(TaskState::Canceled), ..ConsoleFilter::default() };
    let found = store.console_tasks(&canceled, None, 10).await.expect("list");
    assert_eq!(found.iter().map(|t| t.task.id).collect::<Vec<_>>(), vec![ids[0]]);
    let context = all[0].task.context_id.clone();
    let by_context = ConsoleFilter { context_id: Some(context), ..ConsoleFilter::default() };
    assert_eq!(store.console_tasks(&by_context, None, 10).await.expect("list").len(), 1);
    // An id prefix, and "created since".
    let whole = ids[2].to_string();
    let prefix = ConsoleFilter { ids: id_range(Some(&whole[..23]), None).expect("range"), ..ConsoleFilter::default() };
    let found = store.console_tasks(&prefix, None, 10).await.expect("list");
    assert_eq!(found.iter().map(|t| t.task.id).collect::<Vec<_>>(), vec![ids[2]]);
    let since = ConsoleFilter { ids: id_range(None, Some(before_any)).expect("range"), ..ConsoleFilter::default() };
    assert_eq!(store.console_tasks(&since, None, 10).await.expect("list").len(), 5);
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
    let none = ConsoleFilter { ids: id_range(None, Some(later)).expect("range"), ..ConsoleFilter::default() };
    assert!(store.console_tasks(&none, None, 10).await.expect("list").is_empty());
    // An agent's tasks, labelled with it.
    db.exec(
        "INSERT INTO delegations (task_id, agent) VALUES ($1, 'alpha')",
        "INSERT INTO delegations (task_id, agent, updated_at) VALUES ($1, 'alpha', 0)",
        ids[3].0,
    )
    .await
    .expect("delegation");
    let alpha = ConsoleFilter { agent: Some("alpha".into()), ..ConsoleFilter::default() };
    let found = store.console_tasks(&alpha, None, 10).await.expect("list");
    assert_eq!((found.len(), found[0].task.id, found[0].agent.as_deref()), (1, ids[3], Some("alpha")));
    // The counts.
    let counts = store.console_counts().await.expect("counts");
    assert!(counts.by_state.contains(&("canceled".to_owned(), 1)), "{counts:?}");
    assert!(counts.by_tenant.contains(&("acme".to_owned(), 3)), "{counts:?}");
    assert_eq!(counts.by_agent, vec![("alpha".to_owned(), 1)]);
    let minutes = store.console_minutes().await.expect("minutes");
    assert_eq!(minutes.iter().map(|m| m.ended).sum::<i64>(), 1, "the canceled task ended: {minutes:?}");
    let loads = store.console_agents().await.expect("agents");
    assert_eq!((loads.len(), loads[0].in_flight), (1, 1));
    // A dead job is discarded; a live one is not.
    let job = store.task_submit(crate::harness::new_task("dies")).await.expect("submit").task.id;
    let jobs = store.task_jobs(job).await.expect("jobs");
    assert!(!store.job_discard(jobs[0].id).await.expect("discard"), "a live job stays");
    db.exec(
        "UPDATE jobs SET state = 'dead', finished_at = now() WHERE task_id = $1",
        "UPDATE jobs SET state = 'dead', finished_at = 0 WHERE task_id = $1",
        job.0,
    )
    .await
    .expect("dead");
    assert!(store.job_discard(jobs[0].id).await.expect("discard"));
    assert!(store.task_jobs(job).await.expect("jobs").is_empty());
}

crate::harness::on_both_drivers!(the_consoles_reads_filter_and_page_every_tenants_tasks);
