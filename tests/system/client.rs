//! `switchyard send`, the built-in client, as a user runs it: a real
//! process against a real broker (api with gRPC, worker, demo agent), its
//! output and exit code checked, answers to questions given on stdin.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::harness::{TestDb, agent_config, eventually};
use crate::processes::{free_port, http_get, quick_worker, switchyard};

/// Runs `switchyard send ARGS` with `stdin`; (exit code, stdout).
async fn send(db: &TestDb, args: &[&str], stdin: &str) -> (i32, String) {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    let mut child = switchyard(db, &all).stdin(Stdio::piped()).spawn().expect("send");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("send finished")
        .expect("send ran");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_client_sends_streams_and_answers_questions() {
    let Some(db) = TestDb::new().await else { return };
    let agent_port = free_port();
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let _agent = switchyard(&db, &["demo-agent", "--listen", &agent_listen, "--pause", "20ms"]).spawn().expect("agent");
    let config = agent_config(&db, "demo", &format!("http://{agent_listen}"));
    let port = free_port();
    let (listen, grpc) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", free_port()));
    // A short blocking timeout, so one task outlasts it.
    let args = ["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config, "--blocking-timeout", "1s"];
    let _serve = switchyard(&db, &args).spawn().expect("serve");
    let _worker = quick_worker(&db, &config, "client", &[]);
    eventually(Duration::from_secs(30), "broker and agent up", || async {
        http_get(port, "/readyz").await.is_some()
            && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    let url = format!("http://{listen}");

    // Blocking, over each binding the broker offers.
    for binding in ["JSONRPC", "HTTP+JSON", "GRPC"] {
        let (code, out) = send(&db, &["echo hello", "--url", &url, "--binding", binding], "").await;
        assert_eq!(code, 0, "{binding}: {out}");
        assert!(out.contains(&format!("{binding} 1.0")), "{binding}: the interface is named: {out}");
        assert!(out.contains(": hello\n") && out.trim_end().ends_with("completed"), "{binding}: {out}");
    }

    // A task that outlasts the broker's blocking wait is followed to its end.
    let (code, out) = send(&db, &["sleep 2000", "--url", &url], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("artifact result: slept") && out.trim_end().ends_with("completed"), "{out}");

    // Streamed: every chunk as it arrives, then the end.
    let (code, out) = send(&db, &["stream 3", "--stream", "--url", &url], "").await;
    assert_eq!(code, 0, "{out}");
    for chunk in ["chunk 0;", "chunk 1;", "chunk 2;"] {
        assert!(out.contains(chunk), "{chunk} in {out}");
    }
    assert!(out.contains("working") && out.trim_end().ends_with("completed: streamed"), "{out}");

    // A question, answered on stdin, in the same task; blocking and streamed.
    for mode in [&[][..], &["--stream"][..]] {
        let mut args = vec!["ask", "--url", url.as_str()];
        args.extend_from_slice(mode);
        let (code, out) = send(&db, &args, "bonjour\n").await;
        assert_eq!(code, 0, "{mode:?}: {out}");
        assert!(out.contains("input-required: what is your answer?"), "{mode:?}: {out}");
        assert!(out.contains("answer: bonjour\n"), "{mode:?}: the answer's artifact: {out}");
        let ids: std::collections::HashSet<&str> = out.lines().filter_map(|l| l.strip_prefix("task ")).collect();
        assert_eq!(ids.len(), 1, "{mode:?}: one task throughout: {out}");
    }

    // No answer: exit 2 with the command that would answer; then answering
    // it by --task completes that task.
    let (code, out) = send(&db, &["ask", "--url", &url, "--no-input"], "").await;
    assert_eq!(code, 2, "{out}");
    let id = out.lines().find_map(|l| l.strip_prefix("task ")).expect("task id").to_owned();
    assert!(out.contains(&format!("--task {id}")), "{out}");
    let (code, out) = send(&db, &["echo later", "--task", &id, "--url", &url, "--json"], "").await;
    assert_eq!(code, 0, "{out}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["task"]["id"], id.as_str());
    assert_eq!(last["task"]["status"]["state"], "TASK_STATE_COMPLETED");

    // A task that does not complete exits 1; a broker that is not there is an error.
    let (code, out) = send(&db, &["reject", "--url", &url], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejected: I do not do that"), "{out}");
    let (code, _) = send(&db, &["hi", "--url", "http://127.0.0.1:9"], "").await;
    assert_eq!(code, 1);

    // Straight to an agent, no broker in between.
    let (code, out) = send(&db, &["echo direct", "--url", &format!("http://{agent_listen}")], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": direct\n"), "{out}");

    // Routed by skill (the demo agent's "echo"); an unknown skill is refused.
    let (code, out) = send(&db, &["echo by skill", "--skill", "echo", "--url", &url], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": by skill\n"), "{out}");
    let (code, _) = send(&db, &["echo nowhere", "--skill", "no-such-skill", "--url", &url], "").await;
    assert_eq!(code, 1);
    // gRPC asked of an agent that offers none: the error says why.
    let mut refused = switchyard(&db, &["send", "hi", "--binding", "GRPC", "--url", &format!("http://{agent_listen}")]);
    let refused = refused.stderr(Stdio::piped()).output().await.expect("send");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--grpc-listen"), "{refused:?}");
}

/// `switchyard dev` with no config runs the demo agent in its own process,
/// says where everything is, and the three commands it prints work as
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_demo_agent_and_its_suggestions_work_as_printed() {
    let Some(db) = TestDb::new().await else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut dev = switchyard(&db, &["dev", "--listen", &listen]).spawn().expect("dev");
    let banner = crate::first_run::banner(&mut dev).await;
    let text = banner.join("\n");
    assert!(text.contains(&format!("A2A API     http://{listen}")), "{text}");
    assert!(text.contains(&format!("Agent Card  http://{listen}/.well-known/agent-card.json")), "{text}");
    assert!(text.contains("Demo agent  http://127.0.0.1:"), "{text}");
    eventually(Duration::from_secs(30), "dev up", || async { http_get(port, "/readyz").await.is_some() }).await;

    assert!(text.contains(&format!("Store       PostgreSQL, schema \"{}\"", db.schema)), "{text}");
    crate::first_run::suggestions_work_as_printed(&banner, &std::env::temp_dir()).await;
}
