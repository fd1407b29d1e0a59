//! The deployment files that ship beside the binary work with it: every
//! command line in them (systemd units, Kubernetes manifests, the compose
//! file) is one the binary accepts, the units pass `systemd-analyze
//! verify`, the Kubernetes manifests validate against the API's own
//! schemas, and the TLS proxy points at the ports they listen on.

use std::path::Path;
use std::process::Stdio;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The JSON arrays after `key: [` in a YAML file (flow sequences of
/// double-quoted strings are JSON), possibly spanning lines.
fn flow_arrays(text: &str, key: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let needle = format!("{key}: [");
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let start = at + needle.len() - 1;
        let end = start + rest[start..].find(']').expect("a closing bracket");
        let array: Vec<String> = serde_json::from_str(&rest[start..=end]).expect("a flow sequence of strings");
        found.push(array);
        rest = &rest[end..];
    }
    found
}

/// Whether the binary accepts `args` (parsed up to a trailing `--help`).
async fn accepted(args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("switchyard");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

#[tokio::test]
async fn the_deployment_files_run_the_binary_as_it_is() {
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for unit in ["switchyard-migrate.service", "switchyard-serve.service", "switchyard-worker.service"] {
        let path = format!("deploy/systemd/{unit}");
        let text = read(&path);
        let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
        let mut words = exec.split_whitespace().map(str::to_owned);
        assert_eq!(words.next().as_deref(), Some("/usr/local/bin/switchyard"), "{path}");
        commands.push((path.clone(), words.collect()));

        // systemd's own check, with the binary where the unit expects one.
        let dir = std::env::temp_dir().join(format!("switchyard-units-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let local = text.replace("/usr/local/bin/switchyard", env!("CARGO_BIN_EXE_switchyard"));
        std::fs::write(dir.join(unit), local).expect("unit");
        let verified = tokio::process::Command::new("systemd-analyze")
            .args(["verify", &dir.join(unit).to_string_lossy()])
            .output()
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        match verified {
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
                // Units it refers to that this machine lacks are no fault of the file.
                let faults: Vec<&str> = said
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.contains("not found") && !l.contains("No such file"))
                    .collect();
                assert!(faults.is_empty(), "{unit}: {said}");
            }
            Err(e) => eprintln!("deploy: systemd-analyze is not here ({e}); {unit} checked by its command only"),
        }
    }
    let manifests = read("deploy/kubernetes/switchyard.yaml");
    for args in flow_arrays(&manifests, "args") {
        commands.push(("deploy/kubernetes/switchyard.yaml".into(), args));
    }
    let compose = read("docker-compose.yml");
    for command in flow_arrays(&compose, "command") {
        commands.push(("docker-compose.yml".into(), command));
    }
    for test in flow_arrays(&compose, "test").into_iter().filter(|t| t.first().is_some_and(|c| c == "CMD")) {
        if test.get(1).is_some_and(|c| c == "switchyard") {
            commands.push(("docker-compose.yml healthcheck".into(), test[2..].to_vec()));
        }
    }
    assert!(commands.len() >= 10, "{commands:?}");
    for (file, args) in &commands {
        if let Err(refused) = accepted(args).await {
            panic!("{file}: `switchyard {}` is refused: {refused}", args.join(" "));
        }
    }

    // The TLS proxy points at the ports the units serve on.
    let caddy = read("deploy/caddy/Caddyfile");
    assert_eq!(caddy.matches('{').count(), caddy.matches('}').count(), "balanced blocks");
    let serve = read("deploy/systemd/switchyard-serve.service");
    for upstream in ["127.0.0.1:8080", "127.0.0.1:50051"] {
        assert!(caddy.contains(upstream) && serve.contains(upstream), "{upstream}");
    }
}

/// The Kubernetes manifests validate, strictly (no unknown field), against
/// the OpenAPI schemas of the oldest Kubernetes release still supported
/// upstream, with `kubernetes-validate` (schemas bundled: no cluster, no
/// network beyond the package index). A broken copy is refused, so the
/// check cannot pass by checking nothing.
#[tokio::test]
async fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let python = tokio::task::spawn_blocking(|| crate::interop::venv("deploy-venv", &["kubernetes-validate==1.37.0"]))
        .await
        .expect("venv");
    let validate = |path: std::path::PathBuf| {
        let python = python.clone();
        async move {
            tokio::process::Command::new(python)
                .args(["-m", "kubernetes_validate", "--strict", "--no-warn", "-k", "1.33.0"])
                .arg(path)
                .output()
                .await
                .expect("kubernetes-validate")
        }
    };
    let manifests = root().join("deploy/kubernetes/switchyard.yaml");
    let out = validate(manifests.clone()).await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for kind in ["configmap/", "job/switchyard-migrate", "deployment/switchyard-api", "deployment/switchyard-worker"] {
        assert!(said.contains(&format!("passed for resource {kind}")), "{kind} was not checked: {said}");
    }

    let broken = read("deploy/kubernetes/switchyard.yaml").replacen("readinessProbe:", "readinessProbes:", 1);
    let path = std::env::temp_dir().join(format!("switchyard-k8s-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, broken).expect("write");
    let out = validate(path.clone()).await;
    let _ = std::fs::remove_file(&path);
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown field must be refused: {said}");
    assert!(said.contains("'readinessProbes' was unexpected"), "{said}");
}
